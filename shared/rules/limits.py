"""How large a file may be: one rule (FS_MAX_UPLOAD_BYTES) and one refusal, `413 file_too_large`,
for every entry point (multipart form, bot record, the upload handler's last check), and the caps
the entry points derive from it for the bytes they stream before the file is whole."""

from __future__ import annotations

from shared.rules import Refused

# Boundaries, part headers and a 2000-character caption around the file.
MULTIPART_SLACK = 64 * 1024


def too_large(max_bytes: int) -> Refused:
    return Refused(413, "file_too_large", f"the file is larger than {max_bytes} bytes")


def file_size(size: int, max_bytes: int) -> Refused | None:
    """A file of `size` bytes against the limit."""
    return too_large(max_bytes) if size > max_bytes else None


def multipart_cap(max_bytes: int) -> int:
    """The most bytes a multipart upload body may hold: a file at the limit, and its form."""
    return max_bytes + MULTIPART_SLACK


def max_b64_chars(max_bytes: int) -> int:
    """The longest base64 text of a file at the limit, checked before decoding it."""
    return 4 * ((max_bytes + 2) // 3) + 4  # + line-break slack some encoders add


def base64_size(chars: int, max_bytes: int) -> Refused | None:
    """A file sent as `chars` characters of base64 (a bot record), before it is decoded."""
    return too_large(max_bytes) if chars > max_b64_chars(max_bytes) else None
