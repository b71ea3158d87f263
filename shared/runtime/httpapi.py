"""What both HTTP services share: contract-shaped errors, authentication, health endpoints, and a
cap on request bodies with a budget of body bytes in flight."""

from __future__ import annotations

import asyncio
import re
from collections import deque

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

from shared.adapters.db import DB_TRANSIENT
from shared.contract.auth import AuthError, Principal, bearer_token, verify_service_token, verify_token
from shared.contract.errors import ApiError
from shared.contract.ids import InvalidId, check_file_id, check_id


def error_body(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message}}


def error_responses(*codes: tuple[int, str]) -> dict:
    """OpenAPI `responses=` for the contract's error codes of one endpoint."""
    by_status: dict[int, list[str]] = {}
    for status, code in codes:
        by_status.setdefault(status, []).append(code)
    return {
        status: {
            "description": "error codes: " + ", ".join(f"`{c}`" for c in names),
            "content": {"application/json": {"example": error_body(names[0], "...")}},
        }
        for status, names in by_status.items()
    }


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError):
        return JSONResponse(error_body(exc.code, exc.message), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return JSONResponse(
            error_body("invalid_request", f"{where}: {first.get('msg', 'invalid request')}"), status_code=422
        )

    async def _database_unavailable(_: Request, exc: Exception):
        return JSONResponse(
            error_body("unavailable", f"the database did not answer ({type(exc).__name__}); retry"),
            status_code=503,
            headers={"Retry-After": "1"},
        )

    for error in DB_TRANSIENT:
        app.add_exception_handler(error, _database_unavailable)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code)


def authenticate(request: Request, secret: str) -> Principal:
    try:
        return verify_token(secret, bearer_token(request.headers.get("authorization")))
    except AuthError as e:
        raise ApiError(401, "unauthenticated", str(e), {"WWW-Authenticate": "Bearer"}) from None


def authenticate_service(request: Request, secret: str) -> str:
    """The internal routes: a service token (401 for anything else, a user's token included)."""
    try:
        return verify_service_token(secret, bearer_token(request.headers.get("authorization")))
    except AuthError as e:
        raise ApiError(401, "unauthenticated", str(e), {"WWW-Authenticate": "Bearer"}) from None


def lookup_id(value: str, what: str, code: str = "not_found", file_id: bool = False) -> str:
    """An id in the path of a lookup: one not of the contract's shape names nothing there is (404),
    checked after authentication (401 first) and before anything else."""
    try:
        return check_file_id(value, what) if file_id else check_id(value, what)
    except InvalidId as e:
        raise ApiError(404, code, f"no such {what.removesuffix('_id')}: {e}") from None


def write_id(value: str, what: str, file_id: bool = False) -> str:
    """An id in the path of a write: one not of the contract's shape is an invalid request (422)."""
    try:
        return check_file_id(value, what) if file_id else check_id(value, what)
    except InvalidId as e:
        raise ApiError(422, "invalid_request", str(e)) from None


def query_int(raw: str | None, name: str, default: int, low: int, high: int) -> int:
    """An integer query parameter, validated in the handler after authentication (declared as a plain
    string so FastAPI cannot answer 422 before the handler's 401): `default` when absent."""
    if raw is None:
        return default
    if not re.fullmatch(r"[0-9]{1,9}", raw.strip()) or not low <= int(raw) <= high:
        raise ApiError(422, "invalid_request", f"{name}: a whole number from {low} to {high}")
    return int(raw)


def contract_openapi(app: FastAPI) -> None:
    """FastAPI adds a `422 Validation Error` to every route with parameters; ours are plain strings
    validated in the handlers (after authentication), so only the contract's codes are listed."""
    default_openapi = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            spec = default_openapi()
            for operations in spec["paths"].values():
                for operation in operations.values():
                    if operation["responses"].get("422", {}).get("description") == "Validation Error":
                        del operation["responses"]["422"]
            for name in ("HTTPValidationError", "ValidationError"):
                spec.get("components", {}).get("schemas", {}).pop(name, None)
        return app.openapi_schema

    app.openapi = openapi


# --- request bodies -------------------------------------------------------------------------

DEFAULT_BODY_LIMIT = 64 * 1024  # every body but an upload's: settings documents, garbage
BODY_WAIT_SECONDS = 10.0  # how long a body may wait for room in the budget before a 503


class BodyTooLarge(Exception):
    """The request body passed its cap (declared or while streaming): 413."""

    def __init__(self, limit: int):
        super().__init__(f"the request body is larger than {limit} bytes")
        self.limit = limit


class BodyCap:
    """A body's bytes counted against its cap: BodyTooLarge once its declared Content-Length or
    the count of what streamed passes it (both guards of a body use it: the middleware and the
    upload's form reader)."""

    def __init__(self, limit: int, content_length: str | bytes | None):
        declared = (content_length or "").strip()
        self.limit, self.received = limit, 0
        self.declared = int(declared) if declared.isdigit() else None

    def check_declared(self) -> None:
        if self.declared is not None and self.declared > self.limit:
            raise BodyTooLarge(self.limit)

    def count(self, chunk: bytes) -> None:
        self.received += len(chunk)
        if self.received > self.limit:
            raise BodyTooLarge(self.limit)


class ByteBudget:
    """Bytes of request bodies in flight in one process. A body takes its share (its declared length,
    else its cap) when the handler starts reading it and gives it back when the response is sent;
    with no room it waits in line (first come, first served) for up to `wait_seconds`, then the
    request is answered 503 `unavailable` with `Retry-After`."""

    def __init__(self, capacity: int, wait_seconds: float = BODY_WAIT_SECONDS):
        self.capacity, self.available, self.wait_seconds = capacity, capacity, wait_seconds
        self._waiting: deque[tuple[int, asyncio.Future]] = deque()

    async def acquire(self, size: int) -> int:
        """Take `size` bytes (at most the capacity); returns what was taken, for release()."""
        size = min(size, self.capacity)
        if not self._waiting and size <= self.available:
            self.available -= size
            return size
        turn = asyncio.get_running_loop().create_future()
        self._waiting.append((size, turn))
        try:
            async with asyncio.timeout(self.wait_seconds):
                await asyncio.shield(turn)
        except BaseException:  # timed out or cancelled: leave the line, give back a share just granted
            if turn.done() and not turn.cancelled():
                self.release(size)
            else:
                turn.cancel()
                self._wake()
            raise
        return size

    def release(self, size: int) -> None:
        self.available += size
        self._wake()

    def _wake(self) -> None:
        while self._waiting:
            size, turn = self._waiting[0]
            if turn.done():  # its caller left the line
                self._waiting.popleft()
                continue
            if size > self.available:
                return
            self._waiting.popleft()
            self.available -= size
            turn.set_result(None)


class _BodyLimit:
    """ASGI middleware: caps each request body (per route) and books it in a ByteBudget.

    Nothing happens before the handler reads the body: the first read of a body whose declared
    Content-Length passes the cap raises BodyTooLarge before a byte is read, later reads raise it as
    soon as the streamed count passes the cap, and the budget is taken at that first read. Handlers
    authenticate (and do every check that needs no body) before reading it, so a request without a
    valid token is 401 whatever its size (contract: 401 before any other check), and a refused
    request never holds a share of the budget.
    """

    def __init__(
        self, app: ASGIApp, default_max: int, overrides: dict[tuple[str, str], int], budget: ByteBudget | None
    ):
        self.app, self.default_max, self.budget = app, default_max, budget
        self.routes = [(method, compile_path(path)[0], limit) for (method, path), limit in overrides.items()]

    def _limit_for(self, method: str, path: str) -> int:
        for route_method, pattern, limit in self.routes:
            if route_method == method and pattern.match(path):
                return limit
        return self.default_max

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        limit = self._limit_for(scope["method"], scope["path"])
        cap = BodyCap(limit, headers.get(b"content-length"))
        has_body = bool(cap.declared) or b"chunked" in headers.get(b"transfer-encoding", b"").lower()
        if not has_body:
            return await self.app(scope, receive, send)
        state = {"booked": 0, "done": False}

        async def limited_receive():
            if state["done"]:  # the body is read: what follows is a disconnect
                return await receive()
            cap.check_declared()
            if self.budget is not None and not state["booked"]:
                try:
                    state["booked"] = await self.budget.acquire(min(cap.declared or limit, limit))
                except TimeoutError:
                    raise ApiError(
                        503, "unavailable", "too many request bodies in flight; retry shortly", {"Retry-After": "1"}
                    ) from None
            message = await receive()
            if message["type"] == "http.request":
                cap.count(message.get("body", b""))
                state["done"] = not message.get("more_body", False)
            return message

        try:
            await self.app(scope, limited_receive, send)
        finally:
            if state["booked"]:
                self.budget.release(state["booked"])


def install_body_limit(
    app: FastAPI,
    default_max: int = DEFAULT_BODY_LIMIT,
    overrides: dict[tuple[str, str], int] | None = None,
    budget: ByteBudget | None = None,
) -> None:
    """Cap every request body of `app` at `default_max` bytes, or at overrides[(method, path template)]:
    413 `body_too_large` with the contract's error body, unless the handler catches BodyTooLarge to
    answer in its own words (an upload: `file_too_large`). With a budget, bodies in flight share it
    (503 `unavailable` + `Retry-After` when it stays full)."""
    app.add_middleware(_BodyLimit, default_max=default_max, overrides=overrides or {}, budget=budget)

    @app.exception_handler(BodyTooLarge)
    async def _too_large(_: Request, exc: BodyTooLarge):
        return JSONResponse(error_body("body_too_large", str(exc)), status_code=413, headers={"Connection": "close"})


# --- responses by status class ----------------------------------------------------------------


class _CountResponses:
    """ASGI middleware: counts each response by status class; a handler that raised (Starlette answers
    500 outside this middleware) counts as 5xx."""

    def __init__(self, app: ASGIApp, counter):
        self.app, self.counter = app, counter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started: list[int] = []

        async def counted_send(message):
            if message["type"] == "http.response.start" and not started:
                started.append(message["status"])
                self.counter.labels(f"{message['status'] // 100}xx").inc()
            await send(message)

        try:
            await self.app(scope, receive, counted_send)
        except Exception:  # a cancelled request (the client left) is nobody's 5xx
            if not started:
                self.counter.labels("5xx").inc()
            raise


def count_responses(app: FastAPI, counter) -> None:
    """Count every response of `app` in `counter` (labelled by status class: 2xx ... 5xx)."""
    app.add_middleware(_CountResponses, counter=counter)
