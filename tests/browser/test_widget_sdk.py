"""The custom widget SDK (`/agent/widget-sdk.js`): sendFile(blob) in a real browser."""

from __future__ import annotations

import base64

import pytest
from playwright.sync_api import Page, expect

from tests.browser.support import agent_url, open_web_conversation, photo_jpeg
from tests.support import unique, wait_until

pytestmark = pytest.mark.integration

# What a custom widget's code does: import the module and call sendFile with a Blob. The call is
# left running (window.sent) while the test acts as the user, then its outcome is read.
START_SEND = """async ({photo, token, account, conversation}) => {
  const { sendFile } = await import("/agent/widget-sdk.js");
  const bytes = Uint8Array.from(atob(photo), (c) => c.charCodeAt(0));
  const blob = new Blob([bytes], { type: "image/jpeg" });
  window.sent = sendFile(blob, { token, account, conversation })
    .then((answer) => ({ answer }), (error) => ({ code: error.code, message: error.message }));
}"""


def start_send(page: Page, client, account: str, conversation: str, sub: str) -> None:
    page.evaluate(
        START_SEND,
        {
            "photo": base64.b64encode(photo_jpeg(1200, 900)).decode(),
            "token": client.token(account, "agent", sub),
            "account": account,
            "conversation": conversation,
        },
    )


def test_send_file_shows_the_preview_and_sends_as_widget(client, page):
    account = unique("acct")
    conversation, _ = open_web_conversation(client, account)
    page.goto(agent_url(client, account, conversation, sub="agent-7"))
    start_send(page, client, account, conversation, "agent-7")
    preview = page.get_by_role("dialog", name="Send a photo")
    expect(preview.get_by_role("img", name="Preview of the chosen photo")).to_be_visible()
    preview.get_by_label("Caption").fill("From the order widget")
    preview.get_by_role("button", name="Send").click()
    expect(preview).to_be_hidden()
    outcome = page.evaluate("window.sent")
    assert outcome["answer"]["status"] == "uploaded", outcome
    file_id = outcome["answer"]["file_id"]
    client.wait_status(file_id, account, ("published",))
    messages = wait_until(
        lambda: client.http.get(
            f"{client.delivery_url}/v1/conversations/{conversation}/messages", headers=client.auth(account, "agent")
        ).json()["messages"],
        what="the transcript to list the photo",
    )
    assert [(m["file_id"], m["source"], m["caption"]) for m in messages] == [
        (file_id, "widget", "From the order widget")
    ]
    # The workspace shows it too, sent by this agent.
    expect(page.get_by_role("img", name="From the order widget")).to_be_visible()


def test_cancel_resolves_to_nothing_and_sends_nothing(client, page):
    account = unique("acct")
    conversation, _ = open_web_conversation(client, account)
    page.goto(agent_url(client, account, conversation))
    start_send(page, client, account, conversation, "agent-1")
    preview = page.get_by_role("dialog", name="Send a photo")
    preview.get_by_role("button", name="Cancel").click()
    expect(preview).to_be_hidden()
    assert page.evaluate("window.sent") == {"answer": None}


def test_without_send_files_widget_the_user_sees_the_refusal(client, page):
    account = unique("acct")
    conversation, _ = open_web_conversation(client, account, {"agent": ["send_files_local"]})
    page.goto(agent_url(client, account, conversation))
    start_send(page, client, account, conversation, "agent-1")
    expect(page.get_by_role("alert")).to_contain_text("Your profile is not allowed to send files from custom widgets.")
    assert page.evaluate("window.sent")["code"] == "permission_denied"
    expect(page.get_by_role("dialog")).to_have_count(0)
