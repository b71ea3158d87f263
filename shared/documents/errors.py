"""The one domain error of the document code: every parser/writer failure becomes a DocumentRejected."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

from shared.contract.rejections import Rejected

RejectionReason = Literal["unsupported_type", "corrupt_file", "file_too_complex", "encrypted_file", "processing_failed"]
REJECTION_REASONS: frozenset[str] = frozenset(
    ("unsupported_type", "corrupt_file", "file_too_complex", "encrypted_file", "processing_failed")
)


class DocumentRejected(Rejected):
    """A document we refuse; `reason` is a contract rejection code, `detail` says why."""

    REASONS = REJECTION_REASONS


@contextmanager
def wrapped_errors(reason: RejectionReason, what: str) -> Iterator[None]:
    """Turn any exception of the block into DocumentRejected(reason).

    MemoryError is left to the worker pool, which replaces the worker whose heap hit its limit
    (and reports it as a bomb, see shared.documents.work)."""
    try:
        yield
    except (Rejected, MemoryError):
        raise
    except Exception as exc:  # any parser failure is one domain error
        raise DocumentRejected(reason, f"{what}: {type(exc).__name__}: {exc}") from exc
