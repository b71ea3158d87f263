"""The secrets `make run` keeps in FS_DATA_DIR/secrets.env and the address of its database.

The development stack creates them; the operator commands (`fileshare token`, `keys`, `retention
status`) run beside it read them wherever the environment does not set FS_*, so this module is not
part of the development-only package.
"""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path

SECRETS_FILE = "secrets.env"
DATABASE_USER = DATABASE_NAME = "fileshare"


def embedded_database_url(password: str, port: int) -> str:
    return f"postgresql://{DATABASE_USER}:{password}@127.0.0.1:{port}/{DATABASE_NAME}"


# Kept in secrets.env by the operator during a master-key rotation (docs/key-rotation.md), never generated.
OPTIONAL_SECRETS = ("FS_PREVIOUS_MASTER_KEYS",)


def read_secrets(data_dir: Path) -> dict[str, str]:
    """What data_dir/secrets.env holds (nothing when it does not exist); creates nothing."""
    path = data_dir / SECRETS_FILE
    stored: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            name, _, value = line.partition("=")
            if name.strip():
                stored[name.strip()] = value.strip()
    return stored


def load_or_create_secrets(data_dir: Path) -> dict[str, str]:
    """FS_MASTER_KEY, FS_AUTH_SECRET and S3 credentials: from the environment, else from
    data_dir/secrets.env, else freshly generated there (mode 0600). FS_PREVIOUS_MASTER_KEYS too when
    either holds it."""
    path = data_dir / SECRETS_FILE
    stored = read_secrets(data_dir)
    wanted = {
        "FS_MASTER_KEY": lambda: base64.b64encode(secrets.token_bytes(32)).decode(),
        "FS_AUTH_SECRET": lambda: secrets.token_urlsafe(32),
        "FS_S3_ACCESS_KEY": lambda: "fileshare" + secrets.token_hex(4),
        "FS_S3_SECRET_KEY": lambda: secrets.token_urlsafe(24),
        "FS_DATABASE_PASSWORD": lambda: secrets.token_urlsafe(24),
    }
    result, changed = {}, False
    for name, make in wanted.items():
        value = os.environ.get(name) or stored.get(name)
        if not value:
            value, changed = make(), True
        result[name] = value
        stored[name] = value
    for name in OPTIONAL_SECRETS:
        if value := os.environ.get(name) or stored.get(name):
            result[name] = value
    if changed:
        data_dir.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{k}={v}\n" for k, v in stored.items()))
        path.chmod(0o600)
    return result
