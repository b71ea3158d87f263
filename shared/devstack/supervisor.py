"""Supervision of what `make run` started.

A component that exits is restarted after a backoff while everything else keeps running; one that
keeps dying (`max_exits` exits within `window` seconds) makes the supervisor give up, so the
launcher stops everything and exits non-zero instead of restarting it forever. One that stops
answering its liveness probe for `liveness.limit` seconds (shared.devstack.liveness) is killed, whole
session, and restarted the same way: a SIGSTOPped or deadlocked process never exits by itself.
The embedded broker is also restarted, on purpose, in a quiet moment once its memory passes the
limit (shared.devstack.broker_memory): its memory engine never lets go of a record.

Why not supervisord or circus: both run as daemons configured by files and restart a bare command,
while our components need their own start steps (Kafka's topics are created again after its memory
engine restarts empty, PostgreSQL's database is waited for, clamd keeps its port), and neither
stops the whole system when one program keeps dying. This loop is small and sits on the start
methods that EmbeddedStack already has.
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from shared.devstack.liveness import Liveness
from shared.runtime.retry import Backoff

if TYPE_CHECKING:
    from shared.devstack.broker_memory import BrokerRecycler

log = logging.getLogger("fileshare.stack")
RESTART_BACKOFF = Backoff(first=0.5, longest=10.0)

Start = Callable[[], None]  # (re)starts a component; it leaves its process in `procs`


@dataclass
class Supervisor:
    """Watch `procs[name]` for every name in `starters`; restart what exits.

    `procs` is the live table of processes (EmbeddedStack.procs): a start method puts the new
    process there. `reap(name)` is called after an exit, before the restart, to kill what the
    dead process left behind (its process group); it also kills a silent one, group and all."""

    starters: dict[str, Start]
    procs: dict[str, subprocess.Popen]
    reap: Callable[[str], None] = lambda name: None
    max_exits: int = 5
    window: float = 60.0
    backoff: Backoff = RESTART_BACKOFF  # the delay before a restart, by the count of recent exits
    clock: Callable[[], float] = time.monotonic
    exits: dict[str, deque] = field(default_factory=dict)
    pending: dict[str, float] = field(default_factory=dict)  # name → when its restart is due
    gave_up: str | None = None
    liveness: Liveness | None = None
    recycler: BrokerRecycler | None = None

    def run(self, stopping: Callable[[], bool], poll: float = 0.2) -> int:
        """Supervise until `stopping()` (0) or a component keeps dying (1)."""
        probing = threading.Event()
        if self.liveness is not None:
            self.liveness.run_in_background(probing)
        if self.recycler is not None:
            self.recycler.run_in_background(probing)
        try:
            while not stopping():
                if not self.check():
                    return 1
                time.sleep(poll)
            return 0
        finally:
            probing.set()

    def check(self) -> bool:
        """One round: note exits, restart what is due. False once a component keeps dying."""
        for name in self.starters:
            if name in self.pending:
                continue
            proc = self.procs.get(name)
            if proc is not None and proc.poll() is not None and not self._exited(name, proc.returncode):
                return False
        for name, due in list(self.pending.items()):
            if self.clock() >= due:
                del self.pending[name]
                if not self._restart(name):
                    return False
        for name, quiet in self.liveness.silent(skip=self.pending) if self.liveness else ():
            if not self._replace_silent(name, quiet):
                return False
        return self._recycle_broker_when_due()

    def recent_exits(self, name: str) -> int:
        times = self.exits.setdefault(name, deque())
        while times and times[0] < self.clock() - self.window:
            times.popleft()
        return len(times)

    def _exited(self, name: str, how: object) -> bool:
        """Count an exit (or a failed start) and schedule the restart; False when giving up."""
        self.exits.setdefault(name, deque()).append(self.clock())
        self.reap(name)
        count = self.recent_exits(name)
        if count >= self.max_exits:
            self.gave_up = name
            log.error(
                "%s exited with %s: %d exits in the last %.0fs, it keeps dying; stopping everything",
                name,
                how,
                count,
                self.window,
            )
            return False
        delay = self.backoff.delay(count)
        log.warning(
            "%s exited with %s; restarting in %.1fs (restart %d in the last %.0fs)",
            name,
            how,
            delay,
            count,
            self.window,
        )
        self.pending[name] = self.clock() + delay
        return True

    def _restart(self, name: str) -> bool:
        try:
            self.starters[name]()
        except Exception as e:  # a start that fails counts like an exit: backoff, then give up
            return self._exited(name, f"a failed start ({str(e).splitlines()[0] if str(e) else type(e).__name__})")
        if self.liveness is not None:
            self.liveness.restarted(name)
        log.info("%s restarted", name)
        return True

    def _recycle_broker_when_due(self, name: str = "kafka") -> bool:
        """Restart the broker when its recycler says so (over its memory limit, quiet); a deliberate
        restart, so not counted as an exit unless the new start fails."""
        if self.recycler is None or name in self.pending or name not in self.starters:
            return True
        proc = self.procs.get(name)
        probe = self.recycler.due(proc.pid if proc is not None and proc.poll() is None else None)
        if probe is None or proc is None:
            return True
        from shared.devstack.broker_memory import MB

        log.info(
            "%s uses %d MB (recycled from %d MB on) and every consumer group is caught up: restarting it to "
            "free its memory",
            name,
            probe.rss // MB,
            self.recycler.limit // MB,
        )
        self.reap(name)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:  # stuck in the kernel: started beside it anyway
            pass
        self.recycler.recycled()
        return self._restart(name)

    def _replace_silent(self, name: str, quiet: float) -> bool:
        """Kill a component that stopped answering (SIGKILL ends a stopped process too) and count it
        as an exit."""
        log.warning(
            "%s has not answered its liveness check for %.0fs (limit %.0fs); killing it",
            name,
            quiet,
            self.liveness.limit if self.liveness else 0.0,
        )
        self.reap(name)
        proc = self.procs.get(name)
        try:
            code = proc.wait(10) if proc is not None else None
        except subprocess.TimeoutExpired:  # e.g. stuck in the kernel: restarted beside it anyway
            code = None
        return self._exited(name, code)
