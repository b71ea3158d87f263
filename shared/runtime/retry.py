"""One backoff schedule, and one retry loop for the transient errors of the outside systems.

Every wait on something not ready yet (a broker, a database, a restarted component, a starting
clamd) doubles its delay from `first` up to `longest`; the async loop adds jitter so that
instances that failed together do not retry together."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from shared.runtime.outages import note_transient

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Backoff:
    """Delay after the n-th failure in a row: `first` doubled for each, at most `longest`; with
    `jitter` j, the wait is spread over delay × [1 - j/2, 1 + j/2)."""

    first: float = 0.2
    longest: float = 30.0
    jitter: float = 0.0

    def delay(self, failures: int) -> float:
        return min(self.first * 2 ** max(failures - 1, 0), self.longest)

    def wait(self, failures: int) -> float:
        return self.delay(failures) * (1 - self.jitter / 2 + self.jitter * random.random())


async def retry_transient(
    fn: Callable[[], Awaitable[T]],
    what: str,
    transient: tuple[type[BaseException], ...],
    stop: asyncio.Event | None = None,
    on_retry: Callable[[BaseException], None] | None = None,
    max_delay: float = 30.0,
    backoff: Backoff | None = None,
) -> T:
    """Call fn until it succeeds, retrying `transient` errors with backoff (by default jittered,
    doubling from 0.2 s to `max_delay`); once `stop` is set, the error is raised instead."""
    backoff = backoff or Backoff(0.2, max_delay, jitter=0.4)
    failures = 0
    while True:
        try:
            return await fn()
        except transient as e:
            if stop is not None and stop.is_set():
                raise
            failures += 1
            if on_retry:
                on_retry(e)
            if not note_transient(e, what):  # a dependency's outage is logged once, not per retry
                log.warning(
                    "%s: transient error (%s: %s); retrying in %.1fs",
                    what,
                    type(e).__name__,
                    e,
                    backoff.delay(failures),
                )
            await asyncio.sleep(backoff.wait(failures))
