"""Reading the multipart upload with a hard byte limit and no plaintext on disk."""
from __future__ import annotations

from starlette.datastructures import FormData
from starlette.formparsers import MultiPartParser
from starlette.requests import Request

# Boundaries, part headers and a 2000-character caption around the file.
MULTIPART_SLACK = 64 * 1024


class BodyTooLarge(Exception):
    pass


def keep_parts_in_memory(limit: int) -> None:
    """Starlette spools file parts over 1 MB to a temporary file: that would put the plaintext
    photo on disk. The body is capped at `limit`, so memory is bounded anyway."""
    MultiPartParser.spool_max_size = max(MultiPartParser.spool_max_size, limit)


async def read_form_limited(request: Request, limit: int) -> FormData:
    """Parse the multipart body while counting bytes: past `limit` it stops reading, so a
    1 GB body is refused after ~limit bytes and never held in memory."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge()
    received = 0
    original_receive = request._receive

    async def counting_receive():
        nonlocal received
        message = await original_receive()
        received += len(message.get("body", b""))
        if received > limit:
            raise BodyTooLarge()
        return message

    request._receive = counting_receive
    return await request.form(max_files=2, max_fields=8)
