"""The consumer view (`/consumer/` on delivery) in a real browser."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.support import consumer_url, open_web_conversation, photo_jpeg
from tests.support import unique

pytestmark = pytest.mark.integration


def test_the_consumer_sees_the_photo_and_caption_and_opens_it_full_screen(client, page):
    account = unique("acct")
    conversation, consumer = open_web_conversation(client, account)
    page.goto(consumer_url(client, account, conversation, consumer))
    expect(page.get_by_text("No photos yet.")).to_be_visible()
    caption = "Your replacement part, ready for pickup"
    sent = client.upload(account, conversation, photo_jpeg(), caption=caption)
    assert sent.status_code == 202, sent.text
    photo = page.get_by_role("img", name=caption)
    expect(photo).to_be_visible()  # arrives by itself, no reload
    expect(photo).to_have_js_property("naturalWidth", 800)
    expect(page.locator("figcaption")).to_have_text(caption)
    photo.click()
    viewer = page.get_by_role("dialog")
    expect(viewer).to_be_visible()
    expect(viewer.get_by_role("img", name=caption)).to_be_visible()
    box = viewer.bounding_box()
    assert box["width"] == page.viewport_size["width"] and box["height"] == page.viewport_size["height"]
    page.keyboard.press("Escape")
    expect(viewer).to_be_hidden()
    expect(page.get_by_role("link", name=caption)).to_be_focused()


def test_a_consumer_of_another_conversation_sees_an_error_not_the_photo(client, page):
    account = unique("acct")
    conversation, _ = open_web_conversation(client, account)
    other_conversation, other_consumer = open_web_conversation(client, account)
    sent = client.upload(account, conversation, photo_jpeg(), caption="Private photo")
    client.wait_status(sent.json()["file_id"], account, ("published",))
    page.goto(consumer_url(client, account, conversation, other_consumer))
    expect(page.get_by_role("alert")).to_have_text("You don't have access to this conversation.")
    expect(page.get_by_role("img", name="Private photo")).to_have_count(0)
    expect(page.get_by_text("Private photo")).to_have_count(0)
    assert other_conversation != conversation
