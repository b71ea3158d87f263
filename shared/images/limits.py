"""Resource limits for one decode, checked from the image header before pixels are decoded."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # worker processes import this module: they need no settings model
    from shared.settings import Settings


@dataclass(frozen=True)
class ImageLimits:
    max_pixels: int = 50_000_000  # width * height of the canvas
    max_frames: int = 1000  # animation frames / pictures in the file
    max_jpeg_scans: int = 100  # SOS segments of a JPEG (a normal progressive one has ~10)

    @classmethod
    def from_settings(cls, settings: Settings) -> ImageLimits:
        return cls(
            max_pixels=settings.max_image_pixels,
            max_frames=settings.max_image_frames,
            max_jpeg_scans=settings.max_jpeg_scans,
        )
