"""docs/reference: the two HTTP APIs' OpenAPI and the topics' AsyncAPI, written from the code
(`fileshare schemas --write docs/reference`); tests/unit/test_reference_drift.py fails when a
committed file no longer matches what the code generates."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import yaml
from pydantic_settings import BaseSettings
from pydantic_settings import PydanticBaseSettingsSource as Source

from services.delivery.app import bootstrap as delivery_bootstrap
from services.upload.app import bootstrap as upload_bootstrap
from shared.contract.asyncapi import asyncapi_document
from shared.settings import Settings

REFERENCE_DIR = Path(__file__).resolve().parents[1] / "docs" / "reference"


class DefaultSettings(Settings):
    """The documented defaults whatever the environment holds (a description names a default)."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: Source,
        env_settings: Source,
        dotenv_settings: Source,
        file_secret_settings: Source,
    ) -> tuple[Source, ...]:
        return (init_settings,)


def offline_settings() -> Settings:
    """The defaults, plus placeholders for what a service needs to be built (never used: nothing
    connects until a service starts)."""
    return DefaultSettings(
        database_url="postgresql://nobody@127.0.0.1:1/none",
        auth_secret="unused",
        master_key=base64.b64encode(bytes(32)).decode(),
        s3_access_key="unused",
        s3_secret_key="unused",
        clamd="127.0.0.1:1",
    )


def openapi_document(bootstrap, settings: Settings) -> dict:
    """A service's OpenAPI. Building the service connects nothing (its parts connect when it
    starts), so docs/reference is written without a database, a broker or storage."""
    http = bootstrap(settings).http
    if http is None:
        raise RuntimeError("the service has no HTTP API")
    return http.openapi()


def upload_openapi(settings: Settings) -> dict:
    return openapi_document(upload_bootstrap, settings)


def delivery_openapi(settings: Settings) -> dict:
    return openapi_document(delivery_bootstrap, settings)


def as_json(document: dict) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def reference_files() -> dict[str, str]:
    """Each file of docs/reference by name, with the text the code gives it."""
    settings = offline_settings()
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
    return [
        name
        for name, text in reference_files().items()
        if not (directory / name).is_file() or (directory / name).read_text() != text
    ]
