"""Issue 2: `make run` (fileshare run) brings the whole system up and stops it cleanly on SIGTERM,
and on Ctrl-C in a terminal (SIGINT to the foreground process group)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import psutil

from shared.embedded import free_port, free_port_block
from shared.embedded_clamd import write_test_signatures
from shared.settings import METRICS_PORT_OFFSETS
from tests.support import sample, scrape, wait_until


REPO = Path(__file__).resolve().parents[2]


def run_env(tmp_path) -> dict[str, str]:
    data_dir = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FS_")}
    env.update({
        "FS_DATA_DIR": str(data_dir), "FS_S3_ENDPOINT": f"127.0.0.1:{free_port()}",
        "FS_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}", "FS_UPLOAD_PORT": str(free_port()),
        "FS_DELIVERY_PORT": str(free_port()), "FS_METRICS_PORT_BASE": str(free_port_block(5)),
        "FS_EMBEDDED_DATABASE_PORT": str(free_port()),
        "FS_CLAMAV_DB_DIR": str(write_test_signatures(tmp_path / "clamav").parent),
    })
    return env


def start_run(env: dict[str, str], log_path: Path) -> subprocess.Popen:
    """`fileshare run` (what `make run` runs) in its own session, its output in log_path."""
    with open(log_path, "wb") as log:
        return subprocess.Popen([sys.executable, "-m", "shared.cli", "run"], env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)


def wait_all_ready(proc, log_path: Path, env: dict[str, str]) -> None:
    wait_until(lambda: proc.poll() is not None or b"all services ready" in log_path.read_bytes(),
               timeout=180, what="the system to report ready")
    assert proc.poll() is None, log_path.read_text()
    for name in ("upload", "sanitizer", "resizer", "delivery", "retention"):
        assert f"{name} ready" in log_path.read_text()
    assert httpx.get(f"http://127.0.0.1:{env['FS_UPLOAD_PORT']}/readyz").status_code == 200
    assert httpx.get(f"http://127.0.0.1:{env['FS_DELIVERY_PORT']}/readyz").status_code == 200


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
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(["make", "--no-print-directory", "run"], cwd=REPO, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_all_ready(proc, log_path, env)
        # what the terminal sends on Ctrl-C: SIGINT to the whole foreground group
        stop_and_check_no_orphans(proc, log_path, lambda: os.killpg(proc.pid, signal.SIGINT))
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def test_run_comes_up_ready_and_stops_cleanly_on_sigterm(tmp_path):
    env = run_env(tmp_path)
    data_dir = Path(env["FS_DATA_DIR"])
    log_path = tmp_path / "run.log"
    proc = start_run(env, log_path)
    try:
        wait_all_ready(proc, log_path, env)
        assert "malware scanner ready: clamd" in log_path.read_text()
        # Secrets were generated into the data folder, private to the user.
        secrets = data_dir / "secrets.env"
        assert secrets.exists() and oct(secrets.stat().st_mode & 0o777) == "0o600"
        assert "FS_MASTER_KEY=" in secrets.read_text()

        assert stop_and_check_no_orphans(proc, log_path, lambda: proc.send_signal(signal.SIGTERM)) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def test_run_without_signatures_opts_out_of_scanning_loudly_and_says_so(tmp_path):
    """No signatures for clamd: `make run` still comes up, with FS_CLAMD=disabled (unset, the sanitizer
    would refuse to start), a loud warning, and the sanitizer's /readyz and metric telling it."""
    env = {**run_env(tmp_path), "FS_CLAMAV_DB_DIR": str(tmp_path / "no-signatures")}
    log_path = tmp_path / "run.log"
    proc = start_run(env, log_path)
    try:
        wait_all_ready(proc, log_path, env)
        text = log_path.read_text()
        assert "no ClamAV signatures" in text and "MALWARE SCANNING IS DISABLED" in text
        sanitizer = Path(env["FS_DATA_DIR"]) / "logs" / "sanitizer.log"
        assert "MALWARE SCANNING IS DISABLED (FS_CLAMD=disabled)" in sanitizer.read_text()
        port = int(env["FS_METRICS_PORT_BASE"]) + METRICS_PORT_OFFSETS["sanitizer"]
        readyz = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10)
        assert (readyz.status_code, readyz.json()) == (200, {"ready": True, "scanner": "disabled"})
        assert sample(scrape(env, "sanitizer"), "fileshare_scanner_enabled") == 0.0
        assert stop_and_check_no_orphans(proc, log_path, lambda: proc.send_signal(signal.SIGTERM), clamd=False) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
