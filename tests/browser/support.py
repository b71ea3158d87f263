"""Helpers of the browser tests and the screenshot script: Debian's chromium driven by Playwright,
page addresses with the token in the fragment, photos, and holding a pipeline stage still."""

from __future__ import annotations

import os
import shutil
import signal
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Browser, Locator, Page, Playwright, expect

from shared.devstack.embedded import EmbeddedStack
from shared.runtime.webpages import page_url
from tests.imagecorpus import jpeg_with_eicar, photo, to_jpeg
from tests.support import Client, unique

CHROMIUM_CANDIDATES = ("chromium", "chromium-browser")


def chromium_path() -> str:
    """Debian's chromium (`apt-get install chromium`; .ci/run installs it). Missing is an error, never a skip."""
    for name in CHROMIUM_CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    for path in ("/usr/bin/chromium", "/usr/lib/chromium/chromium"):
        if Path(path).exists():
            return path
    raise RuntimeError("chromium is not installed: apt-get install -y chromium")


def launch(playwright: Playwright) -> Browser:
    return playwright.chromium.launch(executable_path=chromium_path(), args=["--disable-gpu"])


def agent_url(client: Client, account: str, *conversations: str, sub: str = "agent-1", role: str = "agent") -> str:
    return page_url(client.upload_url, "agent", client.token(account, role, sub), account, list(conversations))


def consumer_url(client: Client, account: str, conversation: str, consumer: str) -> str:
    return page_url(
        client.delivery_url, "consumer", client.token(account, "consumer", consumer), account, [conversation]
    )


def photo_jpeg(width: int = 1600, height: int = 1200, seed: int = 1) -> bytes:
    return to_jpeg(photo(width, height, seed), quality=88)


def eicar_jpeg() -> bytes:
    """A valid photo with the EICAR test string after its end: the malware scan rejects it."""
    return jpeg_with_eicar("trailer")


def file_payload(data: bytes, name: str = "photo.jpg", mime: str = "image/jpeg") -> dict:
    """What Playwright's set_files takes for a file chosen in the browser's file dialog."""
    return {"name": name, "mimeType": mime, "buffer": data}


def preview_of(page: Page, payload: dict) -> Locator:
    """Attach photo → the browser's file dialog → `payload` chosen: the preview dialog."""
    with page.expect_file_chooser() as chooser:
        page.get_by_role("button", name="Attach photo").click()
    chooser.value.set_files(payload)
    return page.get_by_role("dialog", name="Send a photo")


def send_from(preview: Locator, caption: str) -> None:
    """In the preview: type the caption, press Send; the preview closes."""
    preview.get_by_label("Caption").fill(caption)
    preview.get_by_role("button", name="Send").click()
    expect(preview).to_be_hidden()


def off_loop(fn, *args, **kwargs):
    """Run a helper that calls asyncio.run (Kafka publishing) in another thread: Playwright's sync
    API keeps an event loop running in the test's own thread."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(fn, *args, **kwargs).result()


def open_web_conversation(
    client: Client, account: str, permissions: dict | None = None, channel: str = "web"
) -> tuple[str, str]:
    """An enabled account (default: every permission) and an open conversation: (conversation, consumer)."""
    client.enable_account(account, permissions)
    conversation, consumer = unique("conv"), unique("consumer")
    off_loop(client.open_conversation, account, conversation, consumer, channel=channel)
    return conversation, consumer


@contextmanager
def held(stack: EmbeddedStack, service: str):
    """Freeze a pipeline service (SIGSTOP) so a photo stays in processing while the test looks at
    it; it carries on where it stopped when resumed (SIGCONT), however the block ends."""
    pid = stack.procs[service].pid
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)
