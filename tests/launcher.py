"""`fileshare run` (what `make run` runs) driven from a test: its environment on free ports, its
start, its readiness, and the processes of its components."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psutil

from shared.devstack.embedded import SECRETS_FILE, SERVICES, free_port, free_port_block
from shared.devstack.embedded_clamd import write_test_signatures
from tests.support import Client, metrics_url, wait_until

# How to recognise each server of the launcher among its children: the end of its program's path.
SERVER_PROGRAMS = {"kafka": "tansu", "s3": "rclone", "postgres": "postgres", "clamd": "clamd"}


def run_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    data_dir = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FS_")}
    env.update(
        {
            "FS_DATA_DIR": str(data_dir),
            "FS_S3_ENDPOINT": f"127.0.0.1:{free_port()}",
            "FS_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",
            "FS_UPLOAD_PORT": str(free_port()),
            "FS_DELIVERY_PORT": str(free_port()),
            "FS_METRICS_PORT_BASE": str(free_port_block(6)),
            "FS_EMBEDDED_DATABASE_PORT": str(free_port()),
            "FS_CLAMAV_DB_DIR": str(write_test_signatures(tmp_path / "clamav").parent),
        }
    )
    env.update(overrides)
    return env


FILESHARE_RUN = (sys.executable, "-m", "shared.devstack", "run")


@contextmanager
def launched(
    env: dict[str, str], log_path: Path, command: tuple[str, ...] = FILESHARE_RUN, cwd: Path | None = None
) -> Iterator[subprocess.Popen]:
    """`fileshare run` (or `command`, e.g. make run) in its own session, its output in log_path;
    whatever of it still runs at the end of the block is killed."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def wait_all_ready(proc, log_path: Path, env: dict[str, str]) -> None:
    wait_until(
        lambda: proc.poll() is not None or b"all services ready" in log_path.read_bytes(),
        timeout=180,
        what="the system to report ready",
    )
    assert proc.poll() is None, log_path.read_text()
    for name in SERVICES:
        assert f"{name} ready" in log_path.read_text()
    assert httpx.get(f"http://127.0.0.1:{env['FS_UPLOAD_PORT']}/readyz").status_code == 200
    assert httpx.get(f"http://127.0.0.1:{env['FS_DELIVERY_PORT']}/readyz").status_code == 200


def client_of(env: dict[str, str]) -> Client:
    """A client of the running system, with the secrets the launcher generated in its data folder."""
    data_dir = Path(env["FS_DATA_DIR"])
    secrets = dict(line.split("=", 1) for line in (data_dir / SECRETS_FILE).read_text().splitlines() if "=" in line)
    return Client(env={**env, **secrets}, data_dir=data_dir)


def component(launcher_pid: int, name: str) -> psutil.Process | None:
    """The running process of a component (a service, kafka, s3, postgres, clamd) of the launcher."""
    for child in psutil.Process(launcher_pid).children():
        try:
            argv = child.cmdline()
        except psutil.NoSuchProcess:
            continue
        if name in SERVICES and argv[-2:] == ["-m", f"services.{name}"]:
            return child
        if name in SERVER_PROGRAMS and argv and Path(argv[0]).name == SERVER_PROGRAMS[name]:
            return child
    return None


def restarted(launcher_pid: int, name: str, old_pid: int) -> psutil.Process | None:
    """The component's process once it is another than old_pid."""
    found = component(launcher_pid, name)
    return found if found is not None and found.pid != old_pid else None


def pause(launcher_pid: int, name: str, sig: int = signal.SIGSTOP) -> psutil.Process:
    """SIGSTOP (or SIGCONT) a component: its main process, or for PostgreSQL all of its processes
    (the open connections' backends too, as a stuck database answers on none of them)."""
    victim = component(launcher_pid, name)
    assert victim is not None, f"no running {name}"
    if name == "postgres":
        os.killpg(victim.pid, sig)
    else:
        victim.send_signal(sig)
    return victim


def all_ready(env: dict[str, str]) -> bool:
    """Every service answers /readyz with 200."""
    try:
        return all(
            httpx.get(metrics_url(env, name).replace("/metrics", "/readyz"), timeout=2).status_code == 200
            for name in SERVICES
        )
    except httpx.HTTPError:
        return False


def launcher_metrics(env: dict[str, str]) -> dict[str, float]:
    """The launcher's own metrics (FS_METRICS_PORT_BASE + 5): {sample name: value}."""
    from prometheus_client.parser import text_string_to_metric_families

    from shared.settings import LAUNCHER_METRICS_PORT_OFFSET

    port = int(env["FS_METRICS_PORT_BASE"]) + LAUNCHER_METRICS_PORT_OFFSET
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {s.name: s.value for family in text_string_to_metric_families(text) for s in family.samples}


def send_malware(env: dict[str, str]) -> None:
    """An EICAR photo into a new conversation of the running stack: rejected malware_detected."""
    from tests import imagecorpus as corpus
    from tests.support import unique

    client = client_of(env)
    account, conversation = unique("acct"), unique("conv")
    client.enable_account(account)
    client.open_conversation(account, conversation, unique("consumer"))
    answer = client.upload(account, conversation, corpus.jpeg_with_eicar("trailer"))
    assert answer.status_code == 202, answer.text
    status = client.wait_status(answer.json()["file_id"], account, timeout=90)
    assert (status["status"], status["reason"]) == ("rejected", "malware_detected")
