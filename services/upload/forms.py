"""Reading the multipart upload with a hard byte limit and no plaintext on disk."""
from __future__ import annotations

from starlette.datastructures import FormData
from starlette.formparsers import MultiPartParser
from starlette.requests import Request

# Boundaries, part headers and a 2000-character caption around the file.
MULTIPART_SLACK = 64 * 1024


class BodyTooLarge(Exception):
    pass


async def read_form_limited(request: Request, limit: int) -> FormData:
    """Parse the multipart body while counting bytes: past `limit` it stops reading, so a
    1 GB body is refused after ~limit bytes and never held in memory."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge()

    async def counted_body():
        received = 0
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                raise BodyTooLarge()
            yield chunk

    parser = MultiPartParser(request.headers, counted_body(), max_files=2, max_fields=8)
    # Starlette spools parts over 1 MB to a temporary file: that would put the plaintext photo
    # on disk. The body is capped at `limit`, so keeping parts in memory is bounded.
    parser.spool_max_size = limit
    return await parser.parse()
