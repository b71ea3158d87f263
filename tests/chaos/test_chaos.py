"""Chaos suite (issue 10), run by `make chaos` in CI, not by `make test`.

`fileshare run` (what `make run` runs) on free ports; 12 conversations each get 10 photos (640×480
JPEGs) from clients that retry with the same Idempotency-Key until they are accepted. The photos go
in rounds of 12; during each round after the first, one component is SIGKILLed (each service, the
broker, the S3 server, the database, clamd: once each) once half of the round was accepted, and the
round ends when its photos are accepted and the stack is ready again. Then it waits for the
pipeline to settle, prints its figures and fails unless every accepted photo was published exactly
once, every download works, no blob is an orphan, no blob is plaintext, and the stack is ready.
"""
from __future__ import annotations

import io
import signal
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
from shared.topics import MESSAGE_PUBLISHED
from tests import imagecorpus as corpus
from tests.launcher import all_ready, client_of, component, launched, restarted, run_env, wait_all_ready
from tests.support import Client, FollowerThread, unique, wait_until

CONVERSATIONS = 12
ROUNDS = 10
VICTIMS = ("upload", "sanitizer", "resizer", "delivery", "retention", "kafka", "s3", "postgres", "clamd")
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
            answer = client.upload(account, item.conversation, item.data, caption=item.key,
                                   headers={"Idempotency-Key": item.key})
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
        thread = threading.Thread(target=send_until_accepted, args=(Client(env=client.env, data_dir=client.data_dir),
                                                                   account, item), daemon=True)
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


@pytest.mark.timeout(900)
def test_chaos(tmp_path):
    env = run_env(tmp_path, FS_REDRIVE_SECONDS="5")
    data_dir, log_path = Path(env["FS_DATA_DIR"]), tmp_path / "run.log"
    with launched(env, log_path) as proc:
        wait_all_ready(proc, log_path, env)
        client = client_of(env)
        account = unique("chaos")
        client.enable_account(account)
        conversations = [unique("conv") for _ in range(CONVERSATIONS)]
        for conversation in conversations:
            client.open_conversation(account, conversation, unique("consumer"))

        platform = FollowerThread(env["FS_KAFKA_BOOTSTRAP"])  # follows the whole run, broker SIGKILL included
        platform.start()
        tally, kills, before_broker_loss = Tally(), [], []
        started = time.monotonic()
        for n in range(ROUNDS):
            threads = start_round(client, account, conversations, tally, n)
            if n >= 1 and n - 1 < len(VICTIMS):
                name = VICTIMS[n - 1]
                wait_until(lambda: sum(1 for s in tally.sent[-CONVERSATIONS:] if s.file_id or s.refusal)
                           >= CONVERSATIONS // 2, timeout=120, what=f"half of round {n} accepted")
                if name == "kafka":  # its log dies with it: read what it holds first
                    before_broker_loss = published_records(client, {s.file_id for s in tally.accepted()})
                old = kill(proc.pid, name)
                kills.append(name)
                wait_until(lambda: proc.poll() is not None or restarted(proc.pid, name, old), timeout=120,
                           what=f"{name} to be restarted")
                assert proc.poll() is None, log_path.read_text()[-3000:]
            for thread in threads:
                thread.join()
            wait_until(lambda: all_ready(env), timeout=180, interval=0.5, what=f"the stack to be ready after round {n}")
        last_accepted = time.monotonic()

        accepted = {s.file_id: s for s in tally.accepted()}

        client.wait_published(account, accepted, timeout=300, interval=1)
        settled = time.monotonic()

        in_transcripts = Counter(f for c in conversations for f in client.transcript_ids(account, c))
        # Delivery republishes what the lost log held (same message_id), so a photo may be on both
        # logs: a duplicate is a second record within one log.
        on_topic = Counter(before_broker_loss) | Counter(published_records(client, set(accepted)))
        duplicates = sum(n - 1 for n in (in_transcripts | on_topic).values() if n > 1)
        lost = [f for f in accepted if f not in in_transcripts]
        failed_downloads = [f for f in accepted if not download_works(client, account, f)]
        objects = stored_objects(data_dir)
        orphans = [p for p in objects if (f := blob_file_id(data_dir, p)) is not None and f not in in_transcripts]
        plaintext = [p for p in objects if looks_like_an_image(p)]
        restarts = log_path.read_text().count("; restarting in ")
        wanted = {message_id_for(f) for f in accepted}
        wait_until(lambda: wanted <= set(platform.received), timeout=120, interval=0.5,
                   what="the platform follower to receive every photo")
        followed = Counter(m for m in platform.received if m in wanted)
        figures = {
            "photos sent": len(tally.sent), "accepted": len(accepted),
            "refused or given up": len(tally.sent) - len(accepted),
            "client retries": sum(s.attempts - 1 for s in tally.sent),
            "published": len(in_transcripts), "lost": len(lost), "duplicates": duplicates,
            "failed downloads": len(failed_downloads), "blobs": len(objects), "orphan blobs": len(orphans),
            "plaintext blobs": len(plaintext), "components killed": len(kills), "restarts": restarts,
            "sending under chaos (s)": round(last_accepted - started, 1),
            "time to settle (s)": round(settled - last_accepted, 1),
            "platform received": len(followed), "platform resets": platform.follower.resets,
        }
        print("\nchaos figures (" + ", ".join(kills) + " SIGKILLed once each):")
        for what, value in figures.items():
            print(f"  {what:>24}: {value}")

        assert kills == list(VICTIMS)
        assert set(followed) == wanted and max(followed.values()) == 1
        assert len(accepted) == len(tally.sent), [s.refusal for s in tally.sent if not s.file_id]
        assert not lost and duplicates == 0, (lost, in_transcripts, on_topic)
        assert not failed_downloads
        assert not orphans, orphans[:5]
        assert not plaintext, plaintext[:5]
        assert all_ready(env) and proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 0
