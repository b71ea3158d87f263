"""The one shape of an identifier, checked wherever an id enters: HTTP
paths, token claims, input events, bot records, the command line, storage paths.

Account, conversation, consumer and sender ids and request ids: 1 to 128 characters of
`A-Z a-z 0-9 . _ : @ -`, starting with a letter or a digit. Such an id can be a path segment of
an object key (no `/`, never `.` or `..`), a PostgreSQL text value (no NUL) and a log value (no
line break, no bidirectional override). A file id is a UUID.

`Id` and `FileId` are the same rules as pydantic types, for event models and settings.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, WithJsonSchema

ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}"
FILE_ID_PATTERN = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_ID = re.compile(ID_PATTERN)
_FILE_ID = re.compile(FILE_ID_PATTERN)
SHOWN_CHARS = 60  # of a refused value, in messages and logs


class InvalidId(ValueError):
    """A value that is not an id of the contract's shape."""


def shown(value: object, limit: int = SHOWN_CHARS) -> str:
    """A refused value as one printable ASCII token (NUL, line breaks and bidirectional overrides
    escaped, so it cannot forge a log line or reorder one), cut to about `limit` characters."""
    text = ascii(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(value) if isinstance(value, str) else '?'} chars)"


def is_valid_id(value: object) -> bool:
    return isinstance(value, str) and _ID.fullmatch(value) is not None


def is_valid_file_id(value: object) -> bool:
    return isinstance(value, str) and _FILE_ID.fullmatch(value) is not None


def check_id(value: object, what: str = "id") -> str:
    """`value` when it is an id, else InvalidId naming `what` and the value (escaped)."""
    if not is_valid_id(value):
        raise InvalidId(
            f"{what} must be 1 to 128 characters of A-Z a-z 0-9 . _ : @ - starting with a letter or "
            f"a digit, not {shown(value)}"
        )
    return value  # type: ignore[return-value]


def check_file_id(value: object, what: str = "file_id") -> str:
    if not is_valid_file_id(value):
        raise InvalidId(f"{what} must be a UUID, not {shown(value)}")
    return value  # type: ignore[return-value]


Id = Annotated[
    str, AfterValidator(check_id), WithJsonSchema({"type": "string", "pattern": f"^{ID_PATTERN}$", "maxLength": 128})
]
FileId = Annotated[
    str,
    AfterValidator(check_file_id),
    WithJsonSchema({"type": "string", "format": "uuid", "pattern": f"^{FILE_ID_PATTERN}$"}),
]
