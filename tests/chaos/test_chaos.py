"""Chaos suite, run by `make chaos` in CI, not by `make test`.

`fileshare run` (what `make run` runs) on free ports, FS_LIVENESS_SECONDS=30; 12 conversations each
get 11 photos (640×480 JPEGs) from clients that retry with the same Idempotency-Key until they are
accepted. The photos go in rounds of 12. Once half of a round after the first was accepted, one
component is SIGSTOPped for 20 s and, meanwhile, another is SIGKILLed (each service, the broker, the
S3 server, the database with all its processes, clamd: each once killed and once paused); in the
last round one is left stopped until the supervisor replaces it. A round ends when its photos are
accepted and the stack is ready again. Then it waits for the pipeline to settle, prints its figures
and fails unless every accepted photo was published exactly once, every download works, no blob is
an orphan, no blob is plaintext, no 20 s pause was taken for a hang, the stopped one was replaced,
a platform following the whole run received every photo once, and the stack is ready.
"""

from __future__ import annotations

import io
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from PIL import Image

from services.delivery.handlers import message_id_for
from shared.contract.topics import MESSAGE_PUBLISHED
from tests import imagecorpus as corpus
from tests.launcher import all_ready, client_of, component, launched, pause, restarted, run_env, wait_all_ready
from tests.support import Client, FollowerThread, unique, wait_until

CONVERSATIONS = 12
VICTIMS = ("upload", "sanitizer", "resizer", "delivery", "retention", "kafka", "s3", "postgres", "clamd")
PAUSED = VICTIMS[1:] + VICTIMS[:1]  # round n SIGKILLs VICTIMS[n-1] while PAUSED[n-1] is stopped
LEFT_STOPPED = "postgres"  # in the last round, until the supervisor replaces it
ROUNDS = 1 + len(VICTIMS) + 1
PAUSE_SECONDS = 20
LIVENESS_SECONDS = 30  # the default: a 20 s pause is no hang, a process stopped for good is one
CLIENT_PATIENCE_SECONDS = 180
RETRYABLE = {429, 500, 502, 503, 504}
# A blob stored in plain text would start with, or hold, one of these.
IMAGE_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a")
EMBEDDED_SIGNATURES = (b"JFIF\x00", b"Exif\x00\x00", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a")


@dataclass
class Sent:
    conversation: str
    key: str
    data: bytes
    file_id: str | None = None
    refusal: str | None = None
    attempts: int = 0


@dataclass
class Tally:
    """What the clients saw."""

    sent: list[Sent] = field(default_factory=list)  # appended by the main thread only

    def accepted(self) -> list[Sent]:
        return [s for s in self.sent if s.file_id]


def send_until_accepted(client: Client, account: str, item: Sent) -> None:
    """POST the photo, again with the same Idempotency-Key after a connection error or a 5xx/429,
    until it is accepted (202), refused (another 4xx) or the client's patience is out."""
    deadline, delay = time.monotonic() + CLIENT_PATIENCE_SECONDS, 0.2
    while time.monotonic() < deadline:
        item.attempts += 1
        try:
            answer = client.upload(
                account, item.conversation, item.data, caption=item.key, headers={"Idempotency-Key": item.key}
            )
        except httpx.TransportError:
            answer = None
        if answer is not None and answer.status_code == 202:
            item.file_id = answer.json()["file_id"]
            return
        if answer is not None and answer.status_code not in RETRYABLE:
            item.refusal = f"{answer.status_code} {answer.text[:200]}"
            return
        time.sleep(delay)  # a client's backoff between retries, not a synchronisation
        delay = min(delay * 2, 2.0)
    item.refusal = "gave up"


def photo(n: int) -> bytes:
    return corpus.to_jpeg(corpus.photo(640, 480, seed=n), quality=85)


def start_round(client: Client, account: str, conversations: list[str], tally: Tally, n: int) -> list[threading.Thread]:
    """One photo per conversation, each from its own retrying client thread."""
    threads = []
    for i, conversation in enumerate(conversations):
        item = Sent(conversation, f"chaos-{n}-{i}-{uuid.uuid4().hex[:8]}", photo(n * 100 + i))
        tally.sent.append(item)
        thread = threading.Thread(
            target=send_until_accepted,
            args=(Client(env=client.env, data_dir=client.data_dir), account, item),
            daemon=True,
        )
        thread.start()
        threads.append(thread)
    return threads


def kill(launcher_pid: int, name: str) -> int:
    victim = component(launcher_pid, name)
    assert victim is not None, f"no running {name}"
    victim.send_signal(signal.SIGKILL)
    return victim.pid


def published_records(client: Client, files: set[str]) -> list[str]:
    """The file ids of the message.published records on the broker's log now."""
    return [e.file_id for e in client.read_topic(MESSAGE_PUBLISHED, lambda e: e.file_id in files)]


def download_works(client: Client, account: str, file_id: str) -> bool:
    answer = client.download(file_id, account)
    if answer.status_code != 200:
        return False
    try:
        Image.open(io.BytesIO(answer.content)).verify()
    except Exception:
        return False
    return True


def stored_objects(data_dir: Path) -> list[Path]:
    return [p for p in (data_dir / "s3").rglob("*") if p.is_file()]


def blob_file_id(data_dir: Path, path: Path, bucket: str = "fileshare") -> str | None:
    """The file id of a blob ({account}/{consumer}/{conversation}/{file_id}/{variant}), None for
    what is not a blob of the file bucket (the key bucket's wrapped keys)."""
    parts = path.relative_to(data_dir / "s3").parts
    return parts[4] if parts[0] == bucket and len(parts) == 6 else None


def looks_like_an_image(path: Path) -> bool:
    data = path.read_bytes()
    return data.startswith(IMAGE_SIGNATURES) or any(s in data for s in EMBEDDED_SIGNATURES)


@dataclass
class Run:
    """The launched system, its users, and what the test did to it."""

    proc: subprocess.Popen
    env: dict[str, str]
    log_path: Path
    client: Client
    account: str
    conversations: list[str]
    tally: Tally = field(default_factory=Tally)
    kills: list[str] = field(default_factory=list)
    pauses: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    before_broker_loss: list[str] = field(default_factory=list)  # message.published on the killed broker's log

    def log(self) -> str:
        return self.log_path.read_text()

    def assert_running(self) -> None:
        assert self.proc.poll() is None, self.log()[-3000:]


def opened_run(proc: subprocess.Popen, env: dict[str, str], log_path: Path) -> Run:
    """An account with its conversations on the running system."""
    client = client_of(env)
    account = unique("chaos")
    client.enable_account(account)
    conversations = [unique("conv") for _ in range(CONVERSATIONS)]
    for conversation in conversations:
        client.open_conversation(account, conversation, unique("consumer"))
    return Run(proc, env, log_path, client, account, conversations)


def kill_and_await_restart(run: Run, name: str) -> None:
    if name == "kafka":  # its log dies with it: read what it holds first
        run.before_broker_loss = published_records(run.client, {s.file_id for s in run.tally.accepted()})
    old = kill(run.proc.pid, name)
    run.kills.append(name)
    wait_until(
        lambda: run.proc.poll() is not None or restarted(run.proc.pid, name, old),
        timeout=120,
        what=f"{name} to be restarted",
    )
    run.assert_running()


def kill_during_a_pause(run: Run, victim: str, paused: str) -> None:
    """SIGSTOP `paused`, SIGKILL `victim` meanwhile, SIGCONT `paused` PAUSE_SECONDS after its stop:
    the victim is restarted, the paused one resumes (a pause under the liveness limit is no hang)."""
    stopped = pause(run.proc.pid, paused)
    resume = threading.Timer(PAUSE_SECONDS, pause, args=(run.proc.pid, paused, signal.SIGCONT))
    resume.start()  # on time whatever the victim's restart takes
    try:
        kill_and_await_restart(run, victim)
    finally:
        resume.join()
    run.pauses.append(paused)
    run.assert_running()
    now = component(run.proc.pid, paused)
    assert now is not None and now.pid == stopped.pid, f"{paused} was replaced after a {PAUSE_SECONDS}s pause"


def leave_stopped(run: Run, name: str) -> None:
    """SIGSTOP `name` for good: the supervisor finds it silent and replaces it within the limit + 10 s."""
    stopped = pause(run.proc.pid, name)
    wait_until(
        lambda: run.proc.poll() is not None or restarted(run.proc.pid, name, stopped.pid),
        timeout=LIVENESS_SECONDS + 10,
        interval=0.2,
        what=f"the stopped {name} to be replaced",
    )
    run.assert_running()
    assert f"{name} has not answered its liveness check for" in run.log()
    assert not stopped.is_running()  # killed, not left stopped beside the new one
    run.replaced.append(name)


def chaos_round(run: Run, n: int) -> None:
    """Round n's photos, each from its own client; after the first round, its faults once half of
    it was accepted; done when every photo of it is accepted and the stack is ready again."""
    threads = start_round(run.client, run.account, run.conversations, run.tally, n)
    if n >= 1:
        wait_until(
            lambda: sum(1 for s in run.tally.sent[-CONVERSATIONS:] if s.file_id or s.refusal) >= CONVERSATIONS // 2,
            timeout=120,
            what=f"half of round {n} accepted",
        )
        if n <= len(VICTIMS):
            kill_during_a_pause(run, VICTIMS[n - 1], PAUSED[n - 1])
        else:
            leave_stopped(run, LEFT_STOPPED)
    for thread in threads:
        thread.join()
    wait_until(lambda: all_ready(run.env), timeout=180, interval=0.5, what=f"the stack to be ready after round {n}")


@dataclass
class Outcome:
    """What the run left: on the broker, in the transcripts, in S3, at the platform."""

    accepted: dict[str, Sent]
    in_transcripts: Counter
    on_topic: Counter
    failed_downloads: list[str]
    objects: list[Path]
    orphans: list[Path]
    plaintext: list[Path]
    followed: Counter

    @property
    def duplicates(self) -> int:
        return sum(n - 1 for n in (self.in_transcripts | self.on_topic).values() if n > 1)

    @property
    def lost(self) -> list[str]:
        return [f for f in self.accepted if f not in self.in_transcripts]


def outcome(run: Run, platform: FollowerThread) -> Outcome:
    client, data_dir = run.client, Path(run.env["FS_DATA_DIR"])
    accepted = {s.file_id: s for s in run.tally.accepted()}
    in_transcripts = Counter(f for c in run.conversations for f in client.transcript_ids(run.account, c))
    # Delivery republishes what the lost log held (same message_id), so a photo may be on both
    # logs: a duplicate is a second record within one log.
    on_topic = Counter(run.before_broker_loss) | Counter(published_records(client, set(accepted)))
    objects = stored_objects(data_dir)
    wanted = {message_id_for(f) for f in accepted}
    wait_until(
        lambda: wanted <= set(platform.received),
        timeout=120,
        interval=0.5,
        what="the platform follower to receive every photo",
    )
    return Outcome(
        accepted,
        in_transcripts,
        on_topic,
        failed_downloads=[f for f in accepted if not download_works(client, run.account, f)],
        objects=objects,
        orphans=[p for p in objects if (f := blob_file_id(data_dir, p)) is not None and f not in in_transcripts],
        plaintext=[p for p in objects if looks_like_an_image(p)],
        followed=Counter(m for m in platform.received if m in wanted),
    )


def print_figures(run: Run, found: Outcome, platform: FollowerThread, timings: dict[str, float]) -> None:
    log = run.log()
    figures = {
        "photos sent": len(run.tally.sent),
        "accepted": len(found.accepted),
        "refused or given up": len(run.tally.sent) - len(found.accepted),
        "client retries": sum(s.attempts - 1 for s in run.tally.sent),
        "published": len(found.in_transcripts),
        "lost": len(found.lost),
        "duplicates": found.duplicates,
        "failed downloads": len(found.failed_downloads),
        "blobs": len(found.objects),
        "orphan blobs": len(found.orphans),
        "plaintext blobs": len(found.plaintext),
        "components killed": len(run.kills),
        f"paused {PAUSE_SECONDS}s": len(run.pauses),
        "left stopped, replaced": len(run.replaced),
        "hangs detected": log.count("has not answered its liveness check for"),
        "restarts": log.count("; restarting in "),
        **{what: round(seconds, 1) for what, seconds in timings.items()},
        "platform received": len(found.followed),
        "platform resets": platform.follower.resets,
    }
    print(
        f"\nchaos figures ({', '.join(run.kills)} SIGKILLed once each; {', '.join(run.pauses)} SIGSTOPped "
        f"{PAUSE_SECONDS}s once each; {', '.join(run.replaced)} left stopped; FS_LIVENESS_SECONDS={LIVENESS_SECONDS}):"
    )
    for what, value in figures.items():
        print(f"  {what:>24}: {value}")


@pytest.mark.timeout(900)
def test_chaos(tmp_path):
    env = run_env(tmp_path, FS_REDRIVE_SECONDS="5", FS_LIVENESS_SECONDS=str(LIVENESS_SECONDS))
    log_path = tmp_path / "run.log"
    with launched(env, log_path) as proc:
        wait_all_ready(proc, log_path, env)
        run = opened_run(proc, env, log_path)
        platform = FollowerThread(env["FS_KAFKA_BOOTSTRAP"])  # follows the whole run: kills, pauses, hang
        platform.start()
        started = time.monotonic()
        for n in range(ROUNDS):
            chaos_round(run, n)
        last_accepted = time.monotonic()
        run.client.wait_published(run.account, {s.file_id for s in run.tally.accepted()}, timeout=300, interval=1)
        settled = time.monotonic()
        found = outcome(run, platform)
        print_figures(
            run,
            found,
            platform,
            {"sending under chaos (s)": last_accepted - started, "time to settle (s)": settled - last_accepted},
        )

        assert run.kills == list(VICTIMS) and sorted(run.pauses) == sorted(VICTIMS)
        assert run.replaced == [LEFT_STOPPED]
        assert run.log().count("has not answered its liveness check for") == 1, "a pause was taken for a hang"
        assert set(found.followed) == {message_id_for(f) for f in found.accepted}
        assert max(found.followed.values()) == 1
        assert len(found.accepted) == len(run.tally.sent), [s.refusal for s in run.tally.sent if not s.file_id]
        assert not found.lost and found.duplicates == 0, (found.lost, found.in_transcripts, found.on_topic)
        assert not found.failed_downloads
        assert not found.orphans, found.orphans[:5]
        assert not found.plaintext, found.plaintext[:5]
        assert all_ready(env) and proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 0
