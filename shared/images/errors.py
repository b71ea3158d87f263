"""The one domain error of the image code: every decoder/encoder failure becomes an ImageRejected."""

from __future__ import annotations

from typing import Literal

from shared.contract.rejections import Rejected

RejectionReason = Literal["unsupported_type", "corrupt_image", "image_too_large", "processing_failed"]
REJECTION_REASONS: frozenset[str] = frozenset(
    ("unsupported_type", "corrupt_image", "image_too_large", "processing_failed")
)


class ImageRejected(Rejected):
    """An image we refuse to process; `reason` is a contract rejection code, `detail` says why."""

    REASONS = REJECTION_REASONS
