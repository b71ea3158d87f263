"""Refresh the screenshots of the web pages in docs/ (`make screenshots`).

Starts a private embedded stack (like the tests), sends real photos through it and photographs
the agent workspace (a delivered and a pending photo; the full-page view; a conversation whose
channel cannot receive photos) and the consumer view with Debian's chromium.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter
from playwright.sync_api import expect, sync_playwright

from shared.devstack.embedded import running_stack
from shared.devstack.embedded_clamd import EICAR, clamd_binary, write_test_signatures
from tests.browser.support import agent_url, consumer_url, file_payload, held, launch, preview_of, send_from
from tests.imagecorpus import to_jpeg
from tests.support import Client

DOCS = Path(__file__).resolve().parents[2] / "docs"
ACCOUNT, AGENT, CONSUMER = "acme", "dana.agent", "consumer-7731"
CONVERSATION, OTHER, SMS = "web-48213", "web-48214", "sms-48215"


def device_photo(highlight: str) -> bytes:
    """A 1600×1200 picture of the back of a router (drawn, so the docs need no stock photo):
    `reset` circles the reset button, `cable` shows a cable plugged into the port beside it."""
    image = Image.new("RGB", (1600, 1200))
    draw = ImageDraw.Draw(image)
    for y in range(1200):  # a warm desk under soft light
        shade = int(205 - y * 0.07)
        draw.line([(0, y), (1600, y)], fill=(shade, int(shade * 0.86), int(shade * 0.7)))
    draw.rounded_rectangle([190, 330, 1410, 860], radius=60, fill=(38, 41, 48))
    draw.rounded_rectangle([190, 330, 1410, 400], radius=40, fill=(52, 56, 65))
    for i, x in enumerate(range(330, 1000, 160)):  # four network ports
        draw.rectangle([x, 560, x + 120, 680], fill=(18, 19, 22))
        draw.rectangle([x + 20, 580, x + 100, 660], fill=(70, 74, 82))
        draw.ellipse([x + 10, 700, x + 30, 720], fill=(60, 210, 110) if i < 3 else (90, 90, 90))
    draw.ellipse([1080, 590, 1130, 640], fill=(14, 14, 16))  # the reset button
    draw.ellipse([1096, 606, 1114, 624], fill=(120, 120, 126))
    draw.rectangle([1200, 575, 1300, 655], fill=(14, 14, 16))  # the power socket
    if highlight == "reset":
        draw.ellipse([1030, 540, 1180, 690], outline=(235, 64, 52), width=12)
    else:
        draw.rectangle([330, 520, 450, 700], fill=(240, 190, 40))  # a yellow cable in port 1
        draw.rectangle([365, 700, 415, 1200], fill=(230, 180, 30))
    image = image.filter(ImageFilter.GaussianBlur(1.2))
    return to_jpeg(image)


def main() -> int:
    expect.set_options(timeout=60_000)
    with tempfile.TemporaryDirectory(prefix="fs-screens-") as tmp:
        data_dir = Path(tmp)
        signatures = write_test_signatures(data_dir / "clamav-db").parent if clamd_binary() else None
        with running_stack(data_dir, clamd_signatures=signatures) as stack:
            client = Client(env=stack.env, data_dir=data_dir)
            client.enable_account(ACCOUNT)
            for conversation, channel in ((CONVERSATION, "web"), (OTHER, "web"), (SMS, "sms")):
                client.open_conversation(ACCOUNT, conversation, CONSUMER, channel=channel)
            first = client.upload(
                ACCOUNT,
                CONVERSATION,
                device_photo("reset"),
                sub=AGENT,
                caption="This is the reset button on the back of your router.",
            )
            client.wait_status(first.json()["file_id"], ACCOUNT, ("published",))
            with sync_playwright() as playwright:
                browser = launch(playwright)
                shoot(browser, client, stack)
                browser.close()
    print(f"screenshots written to {DOCS}")
    return 0


def shoot(browser, client: Client, stack) -> None:
    DOCS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 960}, device_scale_factor=1)
    page.goto(agent_url(client, ACCOUNT, CONVERSATION, OTHER, SMS, sub=AGENT))
    expect(page.get_by_role("img", name="This is the reset button on the back of your router.")).to_be_visible()
    caption = "And this is the cable that goes into the port next to it."
    with held(stack, "sanitizer"):
        dialog = preview_of(page, file_payload(device_photo("cable")))
        dialog.get_by_label("Caption").fill(caption)
        dialog.get_by_role("img").evaluate("img => img.decode()")
        page.screenshot(path=DOCS / "agent-preview.png")
        dialog.get_by_role("button", name="Send").click()
        page.get_by_label("Message", exact=True).fill("One moment please, I'm sending you a second photo.")
        expect(page.get_by_text("Checking the photo…")).to_be_visible()
        page.screenshot(path=DOCS / "agent-workspace.png")
    delivered = page.get_by_role("img", name=caption)
    expect(delivered).to_be_visible()
    delivered.click()
    expect(page.get_by_role("dialog")).to_be_visible()
    page.get_by_role("dialog").get_by_role("img").evaluate("img => img.decode()")
    page.screenshot(path=DOCS / "agent-full-page.png")
    page.keyboard.press("Escape")
    if stack.env.get("FS_CLAMD"):  # a photo the malware scan refuses (the EICAR test string appended)
        page.get_by_role("button", name=OTHER).click()
        send_from(preview_of(page, file_payload(device_photo("reset") + EICAR)), "The label on the box")
        expect(page.get_by_text("Not sent", exact=True)).to_be_visible()
        page.screenshot(path=DOCS / "agent-rejected.png")
    page.get_by_role("button", name=SMS).click()
    expect(page.get_by_role("button", name="Attach photo")).to_be_disabled()
    page.screenshot(path=DOCS / "agent-sms-disabled.png")
    page.close()

    page = browser.new_page(viewport={"width": 520, "height": 860}, device_scale_factor=1)
    page.goto(consumer_url(client, ACCOUNT, CONVERSATION, CONSUMER))
    expect(page.get_by_role("img", name=caption)).to_be_visible()
    for img in page.get_by_role("list").get_by_role("img").all():
        expect(img).to_have_js_property("naturalWidth", 800)
    page.screenshot(path=DOCS / "consumer-view.png")
    page.close()


if __name__ == "__main__":
    sys.exit(main())
