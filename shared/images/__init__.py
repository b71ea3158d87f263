"""Image domain code: trusted decoding, content disarm, resizing, and the worker pool that bounds them."""

from .errors import REJECTION_REASONS, ImageRejected
from .formats import ACCEPTED_TYPES, EXTENSIONS, PILLOW_FORMATS, sniff_content_type
from .limits import ImageLimits
from .pool import ImageWorkerPool, PoolClosed
from .resize import ResizeResult, resize_image
from .sanitize import ImageResult, sanitize_image

__all__ = [
    "ACCEPTED_TYPES",
    "EXTENSIONS",
    "PILLOW_FORMATS",
    "REJECTION_REASONS",
    "ImageLimits",
    "ImageRejected",
    "ImageResult",
    "ImageWorkerPool",
    "PoolClosed",
    "ResizeResult",
    "resize_image",
    "sanitize_image",
    "sniff_content_type",
]
