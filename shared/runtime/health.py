"""The one health and metrics app: GET /healthz (alive), /readyz (dependencies answer) and /metrics
(prometheus-client's own ASGI app). Every service serves it on its metrics port; upload and
delivery also on their HTTP port, as routes of their API."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import uvicorn
from prometheus_client import CollectorRegistry, make_asgi_app
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from shared.runtime.metrics import ServiceMetrics

Check = Callable[[], Awaitable[bool]]


class _Exposition:
    """prometheus-client's ASGI app as a route: Starlette would call a plain function as a request
    handler, so the app is wrapped in an object."""

    def __init__(self, registry: CollectorRegistry):
        self.app = make_asgi_app(registry)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


def health_routes(ready: Check, registry: CollectorRegistry, detail: Callable[[], dict] | None = None) -> list[Route]:
    """`detail()` adds fields to /readyz's JSON, e.g. {"ready": true, "scanner": "disabled"}."""

    async def healthz(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def readyz(_: Request) -> JSONResponse:
        ok = await ready()
        return JSONResponse({"ready": ok, **(detail() if detail else {})}, status_code=200 if ok else 503)

    routes = [
        Route("/healthz", healthz, include_in_schema=False),
        Route("/readyz", readyz, include_in_schema=False),
        Route("/metrics", _Exposition(registry), include_in_schema=False),
    ]
    for route in routes:
        route.methods = {"GET"}  # GET only, like the API's own routes (Starlette would add HEAD, or allow any)
    return routes


def add_health_routes(app: Starlette, ready: Check, registry: CollectorRegistry) -> None:
    app.router.routes.extend(health_routes(ready, registry))


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: SIGINT and SIGTERM stay the service's (it stops every
    part in order)."""

    @contextlib.contextmanager
    def capture_signals(self):
        yield


@dataclass
class HealthServer:
    """The running health app; closed like an asyncio server."""

    server: uvicorn.Server
    task: asyncio.Task

    def close(self) -> None:
        self.server.should_exit = True

    async def wait_closed(self) -> None:
        await asyncio.gather(self.task, return_exceptions=True)


async def serve_metrics(
    metrics: ServiceMetrics, port: int, ready: Check, host: str = "127.0.0.1", detail: Callable[[], dict] | None = None
) -> HealthServer:
    """Serve the health app of `metrics` on host:port; the port is bound and listening when this
    returns (a port in use fails here, not later in a task)."""
    registry = metrics.registry
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family)
    app = Starlette(routes=health_routes(ready, registry, detail))
    server = _Server(
        uvicorn.Config(
            app, log_level="warning", lifespan="off", log_config=None, access_log=False, timeout_graceful_shutdown=1
        )
    )
    return HealthServer(server, asyncio.create_task(server.serve(sockets=[sock]), name="health"))
