"""The consumer view (`/consumer/`), and CORS for the agent workspace, which is served by the
upload service and reads transcripts, links and photos from delivery."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from shared.runtime.webpages import mount_pages
from shared.settings import Settings


def mount_consumer_pages(app: FastAPI, settings: Settings) -> None:
    mount_pages(app, "consumer", Path(__file__).parent / "static", settings)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=[settings.public_upload_url],
        allow_credentials=False,
        allow_methods=["GET", "HEAD", "POST"],
        allow_headers=["Authorization", "If-None-Match"],
        expose_headers=["ETag", "Content-Disposition"],
        max_age=600,
    )
