"""Helpers for the delivery tests: small photos, published files, extra instances."""

from __future__ import annotations

import io
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from PIL import Image

from shared.devstack.embedded import EmbeddedStack, free_port
from tests.support import Client, unique, wait_until


def small_photo(width: int = 320, height: int = 240, seed: int = 0) -> bytes:
    img = Image.merge(
        "RGB",
        (
            Image.linear_gradient("L").resize((width, height)),
            Image.effect_noise((width, height), 30 + seed % 20),
            Image.linear_gradient("L").rotate(90).resize((width, height)),
        ),
    )
    out = io.BytesIO()
    img.save(out, "JPEG", quality=85)
    return out.getvalue()


@dataclass
class Published:
    account: str
    conversation: str
    consumer: str
    file_id: str


def new_conversation(client: Client, **settings) -> tuple[str, str, str]:
    account, conversation, consumer = unique("acct"), unique("conv"), unique("consumer")
    client.enable_account(account, **settings)
    client.open_conversation(account, conversation, consumer)
    return account, conversation, consumer


def upload_ok(client: Client, account: str, conversation: str, data: bytes, **kw) -> str:
    r = client.upload(account, conversation, data, **kw)
    assert r.status_code == 202, r.text
    return r.json()["file_id"]


def publish_photo(
    client: Client, data: bytes | None = None, where: tuple[str, str, str] | None = None, **kw
) -> Published:
    account, conversation, consumer = where or new_conversation(client)
    file_id = upload_ok(client, account, conversation, data or small_photo(), **kw)
    status = client.wait_status(file_id, account)
    assert status["status"] == "published", status
    return Published(account, conversation, consumer, file_id)


def delivery_log(stack: EmbeddedStack) -> str:
    path = Path(stack.log_dir) / "delivery.log"
    return path.read_text(errors="replace") if path.exists() else ""


@contextmanager
def delivery_stopped(stack: EmbeddedStack):
    """Delivery is down inside the block; whatever happens, the normal delivery runs again after it."""
    stack.stop_process("delivery")
    try:
        yield
    finally:
        ensure_normal_delivery(stack)


def ensure_normal_delivery(stack: EmbeddedStack) -> None:
    """Replace whatever runs (or ran) as "delivery" with a normally configured one."""
    stack.stop_process("delivery")
    start_delivery(stack)


def start_delivery(stack: EmbeddedStack, env: dict[str, str] | None = None):
    proc = stack.start_service("delivery", env)
    stack.wait_ready("delivery")
    return proc


@dataclass
class ExtraDelivery:
    """A second delivery process in the same consumer group, on ports of its own."""

    stack: EmbeddedStack
    name: str
    port: int
    metrics_base: int

    @classmethod
    def start(cls, stack: EmbeddedStack, name: str = "delivery-2", env: dict[str, str] | None = None) -> ExtraDelivery:
        port, metrics = free_port(), free_port()
        extra = cls(stack, name, port, metrics - 3)  # delivery's metrics port is base + 3
        stack.spawn(
            name,
            [sys.executable, "-m", "services.delivery"],
            {"FS_DELIVERY_PORT": str(port), "FS_METRICS_PORT_BASE": str(extra.metrics_base), **(env or {})},
        )
        return extra

    def ready(self) -> bool:
        proc = self.stack.procs[self.name]
        assert proc.poll() is None, f"{self.name} exited with {proc.returncode}"
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_ready(self) -> None:
        wait_until(self.ready, timeout=60, interval=0.1, what=f"{self.name} ready")

    def stop(self) -> int | None:
        return self.stack.stop_process(self.name)
