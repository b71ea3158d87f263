"""Resource limits for one decode, checked from the image header before pixels are decoded."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ImageLimits:
    max_pixels: int = 50_000_000  # width * height of the canvas
    max_frames: int = 1000  # animation frames / pictures in the file

    @classmethod
    def from_settings(cls, settings) -> "ImageLimits":
        return cls(max_pixels=settings.max_image_pixels, max_frames=settings.max_image_frames)
