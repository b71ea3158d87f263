"""The one domain error of the image code: every decoder/encoder failure becomes an ImageRejected."""
from __future__ import annotations

from typing import Literal

RejectionReason = Literal["unsupported_type", "corrupt_image", "image_too_large", "processing_failed"]
REJECTION_REASONS: frozenset[str] = frozenset(
    ("unsupported_type", "corrupt_image", "image_too_large", "processing_failed")
)


class ImageRejected(Exception):
    """An image we refuse to process; `reason` is a DESIGN.md rejection code, `detail` says why."""

    def __init__(self, reason: RejectionReason, detail: str) -> None:
        if reason not in REJECTION_REASONS:
            raise ValueError(f"unknown rejection reason {reason!r}")
        # Both go to Exception.args so the error pickles across the worker-process pipe.
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}"
