"""What both HTTP services share: contract-shaped errors, authentication, health endpoints."""
from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.auth import AuthError, Principal, bearer_token, verify_token
from shared.db import DB_TRANSIENT


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


def error_body(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message}}


def error_responses(*codes: tuple[int, str]) -> dict:
    """OpenAPI `responses=` for the contract's error codes of one endpoint."""
    by_status: dict[int, list[str]] = {}
    for status, code in codes:
        by_status.setdefault(status, []).append(code)
    return {status: {"description": "error codes: " + ", ".join(f"`{c}`" for c in names),
                     "content": {"application/json": {"example": error_body(names[0], "...")}}}
            for status, names in by_status.items()}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError):
        return JSONResponse(error_body(exc.code, exc.message), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return JSONResponse(error_body("invalid_request", f"{where}: {first.get('msg', 'invalid request')}"),
                            status_code=422)

    async def _database_unavailable(_: Request, exc: Exception):
        return JSONResponse(error_body("unavailable", f"the database did not answer ({type(exc).__name__}); retry"),
                            status_code=503, headers={"Retry-After": "1"})

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


def add_health_routes(app: FastAPI, ready, metrics_exposition) -> None:
    @app.get("/healthz", include_in_schema=False)
    async def healthz():
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz():
        ok = await ready()
        return JSONResponse({"ready": ok}, status_code=200 if ok else 503)

    @app.get("/metrics", include_in_schema=False)
    async def metrics():
        return Response(metrics_exposition(), media_type="text/plain; version=0.0.4")


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
