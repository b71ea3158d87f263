"""Lifecycle of a stream-processing service: metrics/health server, storage, views, processors.

start → run until SIGTERM or a processor dies → stop everything (aiokafka's start/try/finally stop).
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Awaitable, Callable

from shared.kafka import StreamProcessor, TopicView
from shared.metrics import ServiceMetrics, serve_metrics
from shared.runtime import Storage, wait_for_dependencies

log = logging.getLogger(__name__)


@dataclass
class StreamService:
    name: str
    settings: object
    metrics: ServiceMetrics
    storage: Storage
    views: list[TopicView] = field(default_factory=list)
    processors: list[StreamProcessor] = field(default_factory=list)
    on_start: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    on_stop: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    background: list[Callable[[asyncio.Event], Awaitable[None]]] = field(default_factory=list)
    readiness_detail: Callable[[], dict] | None = None  # more fields of /readyz's JSON
    started: bool = False

    async def ready(self) -> bool:
        if not self.started or not all(p.running for p in self.processors) or not all(v.healthy for v in self.views):
            return False
        return await self.storage.ready()

    async def serve(self, stop: asyncio.Event) -> None:
        server = await serve_metrics(self.metrics, self.settings.metrics_port(self.name), self.ready,
                                     self.settings.bind_host, self.readiness_detail)
        tasks: list[asyncio.Task] = []
        try:
            await wait_for_dependencies(self.settings, self.storage, stop)
            for hook in self.on_start:
                await hook()
            for view in self.views:
                await view.start()
            for p in self.processors:
                await p.start()
            tasks = [asyncio.create_task(p.run(), name=p.name) for p in self.processors]
            tasks += [asyncio.create_task(job(stop), name=f"{self.name}-background") for job in self.background]
            self.started = True
            log.info("%s ready", self.name)
            stopper = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                if t is not stopper and t.exception():
                    log.error("%s: %s died", self.name, t.get_name(), exc_info=t.exception())
            stopper.cancel()
        finally:
            self.started = False
            for p in self.processors:
                p.stopping.set()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for p in self.processors:
                await p.stop()
            for view in self.views:
                await view.stop()
            for hook in self.on_stop:
                await hook()
            server.close()
