"""Liveness of what `make run` started (`FS_LIVENESS_SECONDS`).

A process that stops answering (a stuck database, a wedged broker, a deadlocked service) does not
exit, so the supervisor would never restart it. Each component gets a cheap probe of its own
protocol, asked in a daemon thread of its own every `interval` seconds, so a probe that hangs never
stalls the supervisor's loop nor the other probes; `Liveness.silent()` names the components that
have not answered for `limit` seconds.

A component being (re)started is given `start_grace` seconds for its first answer: a service
answers /healthz only once its interpreter has imported everything, which can take longer than the
limit on a loaded machine, and killing it then would only start the same wait again.
"""

from __future__ import annotations

import http.client
import logging
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shared.devstack.embedded import EmbeddedStack

log = logging.getLogger("fileshare.stack")

Probe = Callable[[], bool]  # True when the component answered; bounded by its own timeout

START_GRACE_SECONDS = 120.0  # as long as `make run` waits for a service to be ready at start


def http_answers(host: str, port: int, method: str, path: str, timeout: float) -> bool:
    """Any HTTP answer below 500 counts: the server reads requests and answers them."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, path)
        return conn.getresponse().status < 500
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def postgres_answers(url: str, timeout: float) -> bool:
    """A new connection and `SELECT 1`: the postmaster accepts, a backend runs a query."""
    import psycopg

    try:
        with psycopg.connect(
            url,
            connect_timeout=max(int(timeout), 1),
            autocommit=True,
            options=f"-c statement_timeout={int(timeout * 1000)}",
        ) as conn:
            return conn.execute("SELECT 1").fetchone() == (1,)
    except psycopg.Error:
        return False


# Metadata v1 for no topic at all (an empty array; null would mean every topic): the broker answers
# with itself and the controller, through the same request path as the clients' metadata.
_METADATA, _METADATA_V1, _CLIENT_ID = 3, 1, b"fileshare-liveness"


def kafka_answers(host: str, port: int, timeout: float, correlation_id: int = 7) -> bool:
    """A Kafka Metadata request answered with our correlation id."""
    request = struct.pack(">hhih", _METADATA, _METADATA_V1, correlation_id, len(_CLIENT_ID)) + _CLIENT_ID
    request += struct.pack(">i", 0)
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(struct.pack(">i", len(request)) + request)
            head = _read_exactly(sock, 8)
            size, answered_id = struct.unpack(">ii", head)
            return answered_id == correlation_id and size >= 4
    except (OSError, struct.error):
        return False


def _read_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        part = sock.recv(n - len(data))
        if not part:
            raise ConnectionError("closed before the answer")
        data += part
    return data


def stack_probes(stack: EmbeddedStack, names: Iterable[str], timeout: float) -> dict[str, Probe]:
    """The probe of each named component of the stack: a service's /healthz on its metrics port,
    `SELECT 1` for PostgreSQL, a Metadata request for the broker, HEAD of the bucket for S3 (any
    answer; no credentials needed to be answered 403), PING for clamd."""
    from shared.devstack.embedded import SERVICES, split_hostport
    from shared.devstack.embedded_clamd import ping
    from shared.settings import METRICS_PORT_OFFSETS

    env = stack.env
    probes: dict[str, Probe] = {}
    for name in names:
        kind = name.split("-", 1)[0]
        if kind in SERVICES:
            base = int(stack.service_env.get(name, env)["FS_METRICS_PORT_BASE"])
            probes[name] = partial(
                http_answers, "127.0.0.1", base + METRICS_PORT_OFFSETS[kind], "GET", "/healthz", timeout
            )
        elif kind == "postgres":
            probes[name] = partial(postgres_answers, env["FS_DATABASE_URL"], timeout)
        elif kind == "kafka":
            probes[name] = partial(kafka_answers, *split_hostport(env["FS_KAFKA_BOOTSTRAP"]), timeout)
        elif kind == "s3":
            bucket = env.get("FS_S3_BUCKET", "fileshare")
            probes[name] = partial(http_answers, *split_hostport(env["FS_S3_ENDPOINT"]), "HEAD", f"/{bucket}", timeout)
        elif kind == "clamd":  # its address is read at each probe: a restart may set it again
            probes[name] = lambda: ping(*split_hostport(stack.env["FS_CLAMD"]), timeout=timeout)
    return probes


def stack_liveness(stack: EmbeddedStack, limit: float) -> Liveness:
    """Liveness of every component the stack runs now; each probe waits at most a third of the
    limit (5 s at most), so one slow answer is not yet a miss."""
    return Liveness(stack_probes(stack, list(stack.procs), timeout=min(limit / 3, 5.0)), limit)


@dataclass
class Liveness:
    """When each component last answered its probe; which ones have been silent for `limit`."""

    probes: dict[str, Probe]
    limit: float = 30.0
    start_grace: float = START_GRACE_SECONDS
    clock: Callable[[], float] = time.monotonic
    answered: dict[str, float] = field(default_factory=dict)  # name → its last answer since its start
    started: dict[str, float] = field(default_factory=dict)  # name → when its (re)start completed
    asking: set[str] = field(default_factory=set)  # probes running now (at most one per component)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        for name in self.probes:
            self.restarted(name)

    @property
    def interval(self) -> float:
        """Seconds between two probes of a component: a tenth of the limit (at most 2 s), so a
        pause well under the limit is never taken for a hang."""
        return min(self.limit / 10, 2.0)

    def restarted(self, name: str) -> None:
        """Its start completed: answers from before do not count, its first one is awaited."""
        with self.lock:
            self.started[name] = self.clock()
            self.answered.pop(name, None)

    def silent(self, skip: Iterable[str] = ()) -> list[tuple[str, float]]:
        """(name, seconds without an answer) of each component past its allowance."""
        now, skip, found = self.clock(), set(skip), []
        with self.lock:
            for name in self.probes:
                if name in skip:
                    continue
                last = self.answered.get(name)
                quiet = now - (self.started[name] if last is None else last)
                if quiet >= (self.limit if last is not None else max(self.limit, self.start_grace)):
                    found.append((name, quiet))
        return found

    def ask(self, name: str) -> None:
        """Run one probe (in the caller's thread) and note an answer."""
        try:
            ok = self.probes[name]()
        except Exception:  # a probe that breaks is a probe not answered
            log.debug("liveness probe of %s failed", name, exc_info=True)
            ok = False
        with self.lock:
            self.asking.discard(name)
            if ok:
                self.answered[name] = self.clock()

    def ask_all(self) -> None:
        """One round: a thread per component whose previous probe has finished."""
        for name in self.probes:
            with self.lock:
                if name in self.asking:
                    continue
                self.asking.add(name)
            threading.Thread(target=self.ask, args=(name,), name=f"liveness-{name}", daemon=True).start()

    def run_in_background(self, stopping: threading.Event) -> threading.Thread:
        """Ask every `interval` seconds until `stopping` is set."""

        def rounds() -> None:
            while not stopping.is_set():
                self.ask_all()
                stopping.wait(self.interval)

        thread = threading.Thread(target=rounds, name="liveness", daemon=True)
        thread.start()
        return thread
