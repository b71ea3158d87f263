"""The agent workspace (`/agent/`) and the custom widget SDK (`/agent/widget-sdk.js`): plain files
from static/, served with a strict Content-Security-Policy (shared/runtime/webpages.py)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from shared.runtime.webpages import mount_pages
from shared.settings import Settings


def mount_agent_pages(app: FastAPI, settings: Settings) -> None:
    mount_pages(app, "agent", Path(__file__).parent / "static", settings)
