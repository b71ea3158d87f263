"""Rate-limited logging of a dependency outage (the broker, the database, S3, clamd).

While a dependency is down every client retries, and each retry used to log a line: thousands of
lines for a 3-second broker outage, burying what happened. Now an outage logs one line when it
starts, one when it ends (with its duration and the number of errors), and the errors between are
only counted in `fileshare_dependency_errors_total{dependency}`.

An outage ends when its dependency has raised no error for `quiet` seconds: success is not seen
everywhere (aiokafka retries inside its own tasks and only logs), silence is. Its duration runs
from the first error to the last one.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("fileshare.outages")

QUIET_SECONDS = 5.0

# The root module of an exception's class → the dependency it speaks for.
_DEPENDENCY_OF_MODULE = {
    "aiokafka": "kafka",
    "psycopg": "database",
    "psycopg_pool": "database",
    "shared.adapters.storage": "s3",
    "urllib3": "s3",
    "shared.adapters.scanner": "clamd",
}
# Loggers of client libraries that log every retry themselves.
# The OpenTelemetry exporter's (when tracing is on) logs each failed batch: a collector outage.
_DEPENDENCY_OF_LOGGER = {
    "aiokafka": "kafka",
    "psycopg.pool": "database",
    "urllib3": "s3",
    "opentelemetry.exporter": "collector",
}
# What starts an outage in those loggers (other warnings pass, unless an outage is already open).
_CONNECTION_TROUBLE = re.compile(
    r"connect|metadata|NodeNotReady|RequestTimedOut|coordinator|not available|"
    r"broken|refused|timed out|timeout",
    re.IGNORECASE,
)


@dataclass
class _Outage:
    first: float
    last: float
    errors: int = 1


class DependencyOutages:
    """The open outages of this process; `error()` from any thread."""

    def __init__(self, quiet: float = QUIET_SECONDS, clock: Callable[[], float] = time.monotonic):
        self.quiet, self.clock = quiet, clock
        self.open: dict[str, _Outage] = {}
        self.count: Callable[[str], None] = lambda dependency: None
        self._lock = threading.Lock()
        self._watcher: threading.Thread | None = None

    def count_into(self, counter) -> None:
        """Count errors in a prometheus Counter labelled by dependency."""
        self.count = lambda dependency: counter.labels(dependency).inc()

    def error(self, dependency: str, detail: str) -> None:
        """One failed call to `dependency`: the first of an outage is logged, the others counted."""
        self.count(dependency)
        now = self.clock()
        with self._lock:
            outage = self.open.get(dependency)
            if outage is not None:
                outage.last, outage.errors = now, outage.errors + 1
                return
            self.open[dependency] = _Outage(now, now)
            self._watch()
        log.warning(
            "%s unavailable (%s); its errors are counted in fileshare_dependency_errors_total until "
            "it has been quiet for %.0fs",
            dependency,
            detail,
            self.quiet,
        )

    def end_quiet_outages(self) -> None:
        """Close (and log) every outage whose dependency raised nothing for `quiet` seconds."""
        now = self.clock()
        with self._lock:
            ended = {d: o for d, o in self.open.items() if now - o.last >= self.quiet}
            for dependency in ended:
                del self.open[dependency]
        for dependency, outage in ended.items():
            log.warning(
                "%s available again: outage of %.1fs over (%d errors)",
                dependency,
                outage.last - outage.first,
                outage.errors,
            )

    def _watch(self) -> None:
        # One daemon thread while outages are open: aiokafka's retries run in tasks we do not own,
        # so nothing of ours would otherwise notice that the errors stopped.
        if self._watcher is None or not self._watcher.is_alive():
            self._watcher = threading.Thread(target=self._watch_until_none_open, name="outages", daemon=True)
            self._watcher.start()

    def _watch_until_none_open(self) -> None:
        while True:
            time.sleep(min(1.0, self.quiet / 4))
            self.end_quiet_outages()
            with self._lock:
                if not self.open:
                    self._watcher = None
                    return


OUTAGES = DependencyOutages()


def dependency_of(exc: BaseException) -> str | None:
    """The dependency an exception speaks for (kafka, database, s3, clamd), None for others."""
    return _dependency_by_prefix(type(exc).__module__, _DEPENDENCY_OF_MODULE)


def _dependency_by_prefix(name: str, table: dict[str, str]) -> str | None:
    for prefix, dependency in table.items():
        if name == prefix or name.startswith(prefix + "."):
            return dependency
    return None


def note_transient(exc: BaseException, what: str, outages: DependencyOutages = OUTAGES) -> bool:
    """Count a transient error of a dependency; False when it belongs to none (log it yourself)."""
    dependency = dependency_of(exc)
    if dependency is None:
        return False
    outages.error(dependency, f"{what}: {type(exc).__name__}: {exc}")
    return True


class ClientRetryFilter(logging.Filter):
    """On the log handler: the retry warnings of client libraries become outage errors (counted, not
    printed); their other records pass, unless an outage of their dependency is open."""

    def __init__(self, outages: DependencyOutages = OUTAGES):
        super().__init__()
        self.outages = outages

    def filter(self, record: logging.LogRecord) -> bool:
        dependency = _dependency_by_prefix(record.name, _DEPENDENCY_OF_LOGGER)
        if dependency is None or record.levelno < logging.WARNING:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a filter runs inside the client's call to the logger: never raise there
            return True
        if dependency in self.outages.open or _CONNECTION_TROUBLE.search(message):
            self.outages.error(dependency, message)
            return False
        return True
