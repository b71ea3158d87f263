"""The one lifecycle of every service: metrics and health, dependencies, processors, background
jobs and (for upload and delivery) the HTTP API, in one process.

start → run until SIGTERM or until any part dies → stop everything in reverse. A part that dies
(a processor, a background job, the HTTP server) makes /readyz false at once and the process exit
non-zero, so a supervisor restarts it instead of leaving half a service answering /healthz.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, cast

import uvicorn
from fastapi import FastAPI

from shared.adapters.db import Database
from shared.adapters.kafka import StreamProcessor
from shared.runtime.health import serve_metrics
from shared.runtime.logs import setup_logging
from shared.runtime.metrics import ServiceMetrics
from shared.runtime.tracing import setup_tracing
from shared.runtime.wiring import Storage, wait_for_dependencies
from shared.settings import ConfigurationError, Settings, get_settings

log = logging.getLogger(__name__)

Job = Callable[[asyncio.Event], Coroutine[Any, Any, None]]  # create_task wants a coroutine
Hook = Callable[[], Awaitable[object]]  # the result is ignored (pool.start returns the pool)


@dataclass
class Service:
    name: str
    settings: Settings
    metrics: ServiceMetrics
    storage: Storage
    db: Database
    processors: list[StreamProcessor] = field(default_factory=list)
    background: list[Job] = field(default_factory=list)  # run until the stop event is set
    on_start: list[Hook] = field(default_factory=list)
    on_stop: list[Hook] = field(default_factory=list)
    http: FastAPI | None = None
    http_port: int | None = None
    readiness_detail: Callable[[], dict] | None = None  # more fields of /readyz's JSON
    started: bool = False
    tasks: list[asyncio.Task] = field(default_factory=list)

    async def ready(self) -> bool:
        if not self.started or any(t.done() for t in self.tasks) or not all(p.running for p in self.processors):
            return False
        return await self.db.ready() and await self.storage.ready()

    async def serve(self, stop: asyncio.Event) -> bool:
        """Run until `stop` is set (True) or a part dies (False)."""
        health = await serve_metrics(
            self.metrics,
            self.settings.metrics_port(self.name),
            self.ready,
            self.settings.bind_host,
            self.readiness_detail,
        )
        http_server: uvicorn.Server | None = None
        healthy = True
        try:
            await wait_for_dependencies(self.settings, self.storage, stop)
            await self.db.open(stop)
            for hook in self.on_start:
                await hook()
            await asyncio.gather(*(p.start() for p in self.processors))
            self.tasks = [asyncio.create_task(p.run(), name=p.name) for p in self.processors]
            self.tasks += [
                asyncio.create_task(job(stop), name=getattr(job, "__name__", "background")) for job in self.background
            ]
            if self.http is not None:
                # log_config=None: uvicorn's own records go through our formatter (control characters escaped).
                http_server = uvicorn.Server(
                    uvicorn.Config(
                        self.http,
                        host=self.settings.bind_host,
                        port=cast(int, self.http_port),  # set by every service that has self.http
                        log_level="warning",
                        lifespan="off",
                        log_config=None,
                    )
                )
                http_server.install_signal_handlers = lambda: None  # type: ignore[attr-defined]  # the service owns SIGTERM
                self.tasks.append(asyncio.create_task(http_server.serve(), name=f"{self.name}-http"))
            self.started = True
            log.info("%s ready", self.name)
            stopper = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait([stopper, *self.tasks], return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                if t is not stopper:
                    healthy = False
                    log.error(
                        "%s: %s stopped unexpectedly; stopping the service",
                        self.name,
                        t.get_name(),
                        exc_info=t.exception() if not t.cancelled() else None,
                    )
            stopper.cancel()
        finally:
            self.started = False
            if http_server is not None:
                http_server.should_exit = True  # stop taking requests first, finish those in flight
            for p in self.processors:
                p.stopping.set()
            stop.set()  # background jobs watch it
            for t in self.tasks:
                if http_server is None or t.get_name() != f"{self.name}-http":
                    t.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)
            for p in self.processors:
                await p.stop()
            for hook in self.on_stop:
                await hook()
            await self.db.close()
            health.close()
            await health.wait_closed()
        return healthy


def run_service(name: str, bootstrap: Callable[[Settings], Service]) -> None:
    """Entry point of a service process: logging, SIGINT/SIGTERM → graceful stop; exit 1 if a part died."""
    settings = get_settings()
    setup_logging(name, settings.log_level)
    try:
        setup_tracing(name)  # flushed at exit by the SDK's own atexit hook
    except ValueError as e:
        log.critical("%s refuses to start: %s", name, e)
        sys.exit(2)

    async def runner() -> bool:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        return await bootstrap(settings).serve(stop)

    try:
        healthy = asyncio.run(runner())
    except ConfigurationError as e:
        log.critical("%s refuses to start: %s", name, e)
        sys.exit(2)
    log.info("%s stopped", name)
    sys.exit(0 if healthy else 1)
