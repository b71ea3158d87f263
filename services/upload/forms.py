"""Reading the multipart upload with a hard byte limit and no plaintext on disk; the body limits of
the upload service's routes and its budget of body bytes in flight."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.datastructures import FormData
from starlette.formparsers import MultiPartParser
from starlette.requests import Request

from shared.rules import limits
from shared.runtime.httpapi import ApiError, BodyCap, BodyTooLarge, ByteBudget, install_body_limit
from shared.settings import Settings

UPLOAD_ROUTE = ("POST", "/v1/accounts/{account_id}/conversations/{conversation_id}/files")

__all__ = ["BodyTooLarge", "MalformedForm", "install_upload_body_limits", "read_form_limited"]


class MalformedForm(Exception):
    """Not a multipart body, or a broken one: 422."""


def install_upload_body_limits(app: FastAPI, settings: Settings) -> None:
    """Every body of the upload service is capped while it streams: an upload at FS_MAX_UPLOAD_BYTES
    + multipart slack, anything else (a settings document) at 64 KiB. The bodies read at one time
    share FS_UPLOAD_BUFFER_BYTES, so a burst of uploads waits in line (or is answered 503 with
    Retry-After) instead of growing the process: the photo is held in memory, never spooled to disk."""
    install_body_limit(
        app,
        overrides={UPLOAD_ROUTE: limits.multipart_cap(settings.max_upload_bytes)},
        budget=ByteBudget(settings.upload_buffer_bytes),
    )


async def read_form_limited(request: Request, limit: int) -> FormData:
    """Parse the multipart body while counting bytes: past `limit` it stops reading, so a
    1 GB body is refused after ~limit bytes and never held in memory. BodyTooLarge past the limit,
    MalformedForm when the body is no multipart form."""
    cap = BodyCap(limit, request.headers.get("content-length"))
    cap.check_declared()

    async def counted_body():
        async for chunk in request.stream():
            cap.count(chunk)
            yield chunk

    parser = MultiPartParser(request.headers, counted_body(), max_files=2, max_fields=8)
    # Starlette spools parts over 1 MB to a temporary file: that would put the plaintext photo
    # on disk. The body is capped at `limit`, so keeping parts in memory is bounded.
    parser.spool_max_size = limit
    try:
        return await parser.parse()
    except (BodyTooLarge, ApiError):  # over the cap; no room in the budget (503)
        raise
    except Exception as e:  # noqa: BLE001 - the parser's errors are many (KeyError for no boundary, ...)
        raise MalformedForm(str(e)) from e
