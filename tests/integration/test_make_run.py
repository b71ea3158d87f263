"""`make run` (fileshare run) brings the whole system up and stops it cleanly on SIGTERM,
and on Ctrl-C in a terminal (SIGINT to the foreground process group). It restarts what
dies, and gives up with a non-zero exit when a component keeps dying."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx
import psutil

from shared.settings import METRICS_PORT_OFFSETS
from tests import imagecorpus as corpus
from tests.launcher import all_ready, client_of, component, launched, restarted, run_env, send_malware, wait_all_ready
from tests.support import sample, scrape, unique, wait_until

REPO = Path(__file__).resolve().parents[2]


def stop_and_check_no_orphans(proc, log_path: Path, send_stop, clamd: bool = True) -> int:
    """send_stop() to a running system; it must exit, leave no process of its tree behind, and log
    that it stopped. Returns the exit code."""
    descendants = psutil.Process(proc.pid).children(recursive=True)
    assert len(descendants) >= 7 + clamd  # rclone, tansu, clamd, five services (+ uv, image workers)
    send_stop()
    code = proc.wait(timeout=60)
    gone, alive = psutil.wait_procs(descendants, timeout=10)
    assert not alive, f"orphans left: {[p.pid for p in alive]}"
    assert "stopped" in log_path.read_text()
    return code


def test_make_run_comes_up_and_ctrl_c_stops_everything(tmp_path):
    """The README's command itself, through make and uv, as a person runs it in a terminal."""
    env = run_env(tmp_path)
    log_path = tmp_path / "make-run.log"
    with launched(env, log_path, ("make", "--no-print-directory", "run"), cwd=REPO) as proc:
        wait_all_ready(proc, log_path, env)
        # what the terminal sends on Ctrl-C: SIGINT to the whole foreground group
        stop_and_check_no_orphans(proc, log_path, lambda: os.killpg(proc.pid, signal.SIGINT))


def test_run_comes_up_ready_and_stops_cleanly_on_sigterm(tmp_path):
    env = run_env(tmp_path)
    data_dir = Path(env["FS_DATA_DIR"])
    log_path = tmp_path / "run.log"
    with launched(env, log_path) as proc:
        wait_all_ready(proc, log_path, env)
        assert "malware scanner ready: clamd" in log_path.read_text()
        # Secrets were generated into the data folder, private to the user.
        secrets = data_dir / "secrets.env"
        assert secrets.exists() and oct(secrets.stat().st_mode & 0o777) == "0o600"
        assert "FS_MASTER_KEY=" in secrets.read_text()

        assert stop_and_check_no_orphans(proc, log_path, lambda: proc.send_signal(signal.SIGTERM)) == 0


def test_run_without_signatures_still_scans_with_the_test_signature_and_says_so_once(tmp_path):
    """No signatures for clamd and no mirror for freshclam (none is reachable here, nor in CI):
    `make run` comes up scanning with the project's test signature and ClamAV's built-in checks, says
    once that the official signatures are missing, and EICAR is refused."""
    env = {**run_env(tmp_path), "FS_CLAMAV_DB_DIR": str(tmp_path / "no-signatures")}
    log_path = tmp_path / "run.log"
    with launched(env, log_path) as proc:
        wait_all_ready(proc, log_path, env)
        text = log_path.read_text()
        assert "trying freshclam once" in text and "malware scanner ready: clamd" in text
        assert text.count("official ClamAV signatures are missing") == 1
        assert "MALWARE SCANNING IS DISABLED" not in text
        send_malware(env)
        assert sample(scrape(env, "sanitizer"), "fileshare_scanner_enabled") == 1.0
        assert stop_and_check_no_orphans(proc, log_path, lambda: proc.send_signal(signal.SIGTERM)) == 0


def test_fs_clamd_disabled_is_the_one_loud_opt_out(tmp_path):
    """FS_CLAMD=disabled: `make run` starts no clamd, and the sanitizer's log, /readyz and metric
    tell that files are not scanned."""
    env = run_env(tmp_path, FS_CLAMD="disabled")
    log_path = tmp_path / "run.log"
    with launched(env, log_path) as proc:
        wait_all_ready(proc, log_path, env)
        assert "malware scanner: FS_CLAMD=disabled" in log_path.read_text()
        sanitizer = Path(env["FS_DATA_DIR"]) / "logs" / "sanitizer.log"
        assert "MALWARE SCANNING IS DISABLED (FS_CLAMD=disabled)" in sanitizer.read_text()
        port = int(env["FS_METRICS_PORT_BASE"]) + METRICS_PORT_OFFSETS["sanitizer"]
        readyz = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10)
        assert (readyz.status_code, readyz.json()) == (200, {"ready": True, "scanner": "disabled"})
        assert sample(scrape(env, "sanitizer"), "fileshare_scanner_enabled") == 0.0
        assert stop_and_check_no_orphans(proc, log_path, lambda: proc.send_signal(signal.SIGTERM), clamd=False) == 0


def worker_cpu_seconds(service: psutil.Process) -> dict[int, float]:
    """CPU time used so far by each process under a service (its image workers)."""
    used = {}
    for p in service.children(recursive=True):
        try:
            times = p.cpu_times()
        except psutil.NoSuchProcess:
            continue
        used[p.pid] = times.user + times.system
    return used


def decoding(service: psutil.Process, before: dict[int, float]) -> bool:
    """An image worker of the service is busy: it used CPU since `before`."""
    return any(seconds - before.get(pid, 0.0) > 0.05 for pid, seconds in worker_cpu_seconds(service).items())


def test_a_killed_service_is_restarted_and_a_stop_mid_decode_still_publishes_the_photo(tmp_path):
    # Scans allowed up to 1000 so that a valid 900-scan JPEG keeps a worker decoding for a while.
    env = run_env(tmp_path, FS_MAX_JPEG_SCANS="1000")
    log_path = tmp_path / "run.log"
    with launched(env, log_path) as proc:
        wait_all_ready(proc, log_path, env)
        resizer = component(proc.pid, "resizer")
        resizer.kill()
        wait_until(lambda: restarted(proc.pid, "resizer", resizer.pid), what="the resizer to be restarted")
        assert "resizer exited with -9; restarting in 0.5s (restart 1 in the last 60s)" in log_path.read_text()
        wait_until(lambda: all_ready(env), timeout=120, what="the stack to be ready again")

        client = client_of(env)
        account, conversation = unique("acct"), unique("conv")
        client.enable_account(account)
        client.open_conversation(account, conversation, unique("consumer"))
        sanitizer = component(proc.pid, "sanitizer")
        before = worker_cpu_seconds(sanitizer)
        slow = corpus.progressive_scan_bomb(scans=900, width=4096, height=4096)
        file_id = client.upload(account, conversation, slow, filename="slow.jpg").json()["file_id"]
        wait_until(lambda: decoding(sanitizer, before), timeout=60, what="the sanitizer to be decoding the photo")
        os.killpg(sanitizer.pid, signal.SIGTERM)  # the whole group, as an operator or systemd would

        assert client.wait_status(file_id, account, timeout=180)["status"] == "published"
        wait_until(
            lambda: "sanitizer exited with 0; restarting" in log_path.read_text(),
            what="the stopped sanitizer to be restarted",
        )
        assert stop_and_check_no_orphans(proc, log_path, lambda: proc.send_signal(signal.SIGTERM)) == 0


def test_run_stops_everything_and_exits_non_zero_when_a_component_keeps_dying(tmp_path):
    env = run_env(tmp_path)
    log_path = tmp_path / "run.log"
    with launched(env, log_path) as proc:
        wait_all_ready(proc, log_path, env)
        descendants = psutil.Process(proc.pid).children(recursive=True)
        victim = component(proc.pid, "retention")
        for _ in range(5):  # killed each time it is back: 5 exits within a minute
            victim.kill()
            victim = wait_until(
                lambda: proc.poll() is not None or restarted(proc.pid, "retention", victim.pid),
                what="retention to be restarted or the launcher to give up",
            )
        assert proc.wait(timeout=120) == 1
        assert (
            "retention exited with -9: 5 exits in the last 60s, it keeps dying; stopping everything"
            in log_path.read_text()
        )
        gone, alive = psutil.wait_procs(descendants, timeout=10)
        assert not alive, f"orphans left: {[p.pid for p in alive]}"
