"""Master-key rotation on the real system (`fileshare run`, what `make run` runs), the way
docs/key-rotation.md tells an operator of `make run` to do it: the new key as FS_MASTER_KEY and the
old one in FS_PREVIOUS_MASTER_KEYS (FS_DATA_DIR/secrets.env), a restart, `fileshare keys rotate`
while photos are sent and downloaded, `fileshare keys status`, then the old key removed and a restart
with the new one alone: every photo sent before, during and after still downloads, byte for byte."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from shared.adapters.crypto import ConsumerKeyStore, MasterKeyRing, decode_master_key, master_key_id
from shared.adapters.storage import S3ObjectStore
from shared.devstack.embedded import SECRETS_FILE, read_secrets
from tests import imagecorpus as corpus
from tests.launcher import client_of, launched, run_env, wait_all_ready
from tests.support import Client, unique

IMAGE_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a")
# Consumer keys made beside the photos' own, so that the rotation has batches to go through while
# photos are being sent.
EXTRA_KEYS = 150


def write_secrets(data_dir: Path, **values: str | None) -> None:
    """Edit secrets.env as the operator does (a value None removes the line)."""
    stored = read_secrets(data_dir)
    for name, value in values.items():
        if value is None:
            stored.pop(name, None)
        else:
            stored[name] = value
    path = data_dir / SECRETS_FILE
    path.write_text("".join(f"{k}={v}\n" for k, v in stored.items()))
    path.chmod(0o600)


def fileshare(env: dict[str, str], *args: str, **popen) -> subprocess.Popen:
    """An operator's command beside `make run`: FS_* of the shell (no secrets), the rest from secrets.env."""
    return subprocess.Popen(
        (sys.executable, "-m", "services.cli", *args),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **popen,
    )


def key_status(env: dict[str, str]) -> tuple[int, dict]:
    proc = fileshare(env, "keys", "status")
    out, _ = proc.communicate(timeout=120)
    return proc.returncode, json.loads(out)


def send_photo(client: Client, account: str, seed: int) -> str:
    """A photo in a conversation of its own, with a consumer of its own (a new consumer key)."""
    conversation = unique("conv")
    client.open_conversation(account, conversation, unique("consumer"))
    r = client.upload(account, conversation, corpus.to_jpeg(corpus.photo(320, 240, seed=seed)))
    assert r.status_code == 202, r.text
    return r.json()["file_id"]


def downloads(client: Client, account: str, file_ids) -> dict[str, bytes]:
    out = {}
    for file_id in file_ids:
        r = client.download(file_id, account)
        assert r.status_code == 200 and r.content.startswith(b"\xff\xd8\xff"), (file_id, r.status_code, r.text[:200])
        out[file_id] = r.content
    return out


def make_extra_keys(env: dict[str, str], master_key: str) -> None:
    secrets = read_secrets(Path(env["FS_DATA_DIR"]))
    store = S3ObjectStore(
        env["FS_S3_ENDPOINT"], secrets["FS_S3_ACCESS_KEY"], secrets["FS_S3_SECRET_KEY"], "fileshare-keys"
    )
    keys = ConsumerKeyStore(store, MasterKeyRing(decode_master_key(master_key)))

    async def create():
        await asyncio.gather(*(keys.get_or_create(unique("acct"), unique("consumer")) for _ in range(EXTRA_KEYS)))

    asyncio.run(create())


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=90) == 0


def test_rotation_under_load_keeps_every_photo_and_retires_the_old_key(tmp_path):
    env = run_env(tmp_path)
    data_dir = Path(env["FS_DATA_DIR"])
    account = unique("acct")

    # Before: photos sent under master key A, the one `make run` generated.
    with launched(env, tmp_path / "run-a.log") as proc:
        wait_all_ready(proc, tmp_path / "run-a.log", env)
        client = client_of(env)
        client.enable_account(account)
        before = [send_photo(client, account, seed) for seed in range(3)]
        client.wait_published(account, before)
        stored = downloads(client, account, before)
        key_a = read_secrets(data_dir)["FS_MASTER_KEY"]
        make_extra_keys(env, key_a)
        stop(proc)

    # The operator's rotation: the new key current, the old one kept for what it wraps.
    key_b = base64.b64encode(os.urandom(32)).decode()
    write_secrets(data_dir, FS_MASTER_KEY=key_b, FS_PREVIOUS_MASTER_KEYS=key_a)
    id_a, id_b = master_key_id(decode_master_key(key_a)), master_key_id(decode_master_key(key_b))
    with launched(env, tmp_path / "run-ab.log") as proc:
        wait_all_ready(proc, tmp_path / "run-ab.log", env)
        client = client_of(env)
        assert key_status(env)[1]["by_master_key_id"] == {id_a: EXTRA_KEYS + len(before)}
        rotation = fileshare(env, "keys", "rotate", "--batch-size", "5")
        during, sent_while_rotating = [], 0
        while rotation.poll() is None or len(during) < 3:  # sending and downloading go on meanwhile
            sent_while_rotating += rotation.poll() is None
            during.append(send_photo(client, account, 10 + len(during)))
            assert downloads(client, account, before) == stored
        output, _ = rotation.communicate(timeout=120)
        assert rotation.returncode == 0, output
        assert sent_while_rotating >= 1, output
        assert f"re-wrapping consumer keys under master key {id_b}" in output
        assert f"{EXTRA_KEYS + len(before)} re-wrapped" in output and "no consumer key is under a former" in output
        after = [send_photo(client, account, 100 + seed) for seed in range(3)]
        client.wait_published(account, during + after)
        stored |= downloads(client, account, during + after)
        code, status = key_status(env)
        assert (code, status["by_master_key_id"], status["under_other_master_keys"]) == (
            0,
            {id_b: EXTRA_KEYS + len(before) + len(during) + len(after)},
            0,
        )
        stop(proc)

    # The old key removed: the stack runs with the new one alone.
    write_secrets(data_dir, FS_PREVIOUS_MASTER_KEYS=None)
    assert key_a not in (data_dir / SECRETS_FILE).read_text()
    with launched(env, tmp_path / "run-b.log") as proc:
        wait_all_ready(proc, tmp_path / "run-b.log", env)
        client = client_of(env)
        assert downloads(client, account, before + during + after) == stored
        assert key_status(env)[0] == 0
        stop(proc)

    # No plaintext at rest: no object of the object store begins like an image.
    objects = [p for p in (data_dir / "s3").rglob("*") if p.is_file()]
    assert len(objects) >= 3 * len(stored) + EXTRA_KEYS
    for path in objects:
        assert not path.read_bytes().startswith(IMAGE_SIGNATURES), f"{path} is a plaintext image"
