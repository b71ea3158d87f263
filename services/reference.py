"""docs/reference: the two HTTP APIs' OpenAPI and the topics' AsyncAPI, written from the code
(`fileshare schemas --write docs/reference`); tests/unit/test_reference_drift.py fails when a
committed file no longer matches what the code generates."""
from __future__ import annotations

import json
from pathlib import Path

import yaml

from services.delivery.app import openapi_document as delivery_openapi
from services.upload.app import openapi_document as upload_openapi
from shared.contract.asyncapi import asyncapi_document
from shared.settings import Settings

REFERENCE_DIR = Path(__file__).resolve().parents[1] / "docs" / "reference"


class DefaultSettings(Settings):
    """The documented defaults whatever the environment holds (a description names a default)."""

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, **sources):
        return (init_settings,)


def as_json(document: dict) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def reference_files() -> dict[str, str]:
    """Each file of docs/reference by name, with the text the code gives it."""
    settings = DefaultSettings()
    return {
        "openapi-upload.json": as_json(upload_openapi(settings)),
        "openapi-delivery.json": as_json(delivery_openapi(settings)),
        "asyncapi.yaml": yaml.safe_dump(asyncapi_document(), sort_keys=False, allow_unicode=True, width=110),
    }


def write_reference(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in reference_files().items():
        (path := directory / name).write_text(text)
        written.append(path)
    return written


def stale_files(directory: Path) -> list[str]:
    """The files of the directory that are missing or differ from what the code generates."""
    return [name for name, text in reference_files().items()
            if not (directory / name).is_file() or (directory / name).read_text() != text]
