"""The upload rules as pure functions, the whole matrix cell by cell."""

from __future__ import annotations

import base64
from collections import Counter

import pytest

from services.upload.bots import decode_content, max_b64_chars
from services.upload.policy import (
    Refused,
    capabilities,
    check_caption,
    check_sender,
    check_source,
    check_type,
    sendable_types,
)
from shared.contract import events as ev
from shared.contract.auth import Principal
from shared.images import sniff_content_type
from shared.images.formats import SNIFF_BYTES
from shared.projections.conversations import Conversation
from tests import imagecorpus as corpus
from tests import phonecorpus as phone
from tests.upload_matrix import (
    OK,
    all_cells,
    consumer_cells,
    expected,
    expected_for_consumer,
    expected_for_type,
    type_cells,
)

ACCOUNT, OTHER = "acct-a", "acct-b"
CHANNELS = frozenset({"web"})
OUTCOMES = {
    OK,
    (403, "feature_disabled"),
    (403, "file_sharing_disabled"),
    (403, "permission_denied"),
    (403, "consumer_uploads_disabled"),
    (404, "conversation_not_found"),
    (409, "conversation_closed"),
    (409, "channel_not_supported"),
}


def settings_for(cell) -> ev.AccountSettingsDocument:
    # The role's profile gets the cell's permissions; the other profiles get everything, so
    # nothing but the caller's own profile can make a difference.
    everything = ["send_files_local", "send_files_widget"]
    perms = {p: everything for p in ev.PROFILES}
    if cell.role in ev.PROFILES:
        perms[cell.role] = list(cell.permissions)
    return ev.AccountSettingsDocument(
        feature_enabled=cell.feature_enabled, file_sharing_enabled=cell.file_sharing_enabled, permissions=perms
    )


def conversation_for(state: str, channel: str) -> Conversation | None:
    """The conversation as the service knows it after the platform's events (folding them into the
    table is tested in tests/integration/test_conversations_table.py, end to end in the matrix)."""
    if state == "unknown":
        return None
    owner = OTHER if state == "other_account" else ACCOUNT
    return Conversation(owner, "conv-1", "consumer-1", channel, authenticated=False, open=state != "closed")


def policy_answer(cell) -> tuple[int, str | None]:
    source = "widget" if cell.source == "widget" else "local"
    via = "topic" if cell.source == "bot_topic" else "http"
    try:
        check_sender(
            Principal("user-1", ACCOUNT, cell.role),
            ACCOUNT,
            settings_for(cell),
            source,
            conversation_for(cell.state, cell.channel),
            CHANNELS,
            via,
        )
    except Refused as r:
        return r.status, r.code
    return OK


def test_every_cell_of_the_matrix_gets_the_contracts_answer():
    cells = all_cells()
    assert len(cells) == 6 * 4 * 2 * 2 * 5 * 2 * 4
    wrong = [(c.label(), policy_answer(c), expected(c)) for c in cells if policy_answer(c) != expected(c)]
    assert not wrong, f"{len(wrong)} cells differ, e.g. {wrong[:5]}"
    # The oracle is not trivial: every answer of the contract occurs.
    assert set(Counter(expected(c) for c in cells)) == OUTCOMES


def consumer_conversation(state: str, channel: str) -> Conversation | None:
    if state == "other_consumer":
        return Conversation(ACCOUNT, "conv-1", "consumer-2", channel, authenticated=True, open=True)
    return conversation_for(state, channel)


def consumer_answer(cell) -> tuple[int, str | None]:
    settings = ev.AccountSettingsDocument(
        feature_enabled=cell.feature_enabled,
        file_sharing_enabled=cell.file_sharing_enabled,
        consumer_uploads_enabled=cell.consumer_uploads_enabled,
    )
    try:
        check_sender(
            Principal("consumer-1", ACCOUNT, "consumer"),
            ACCOUNT,
            settings,
            cell.form_source or "local",
            consumer_conversation(cell.state, cell.channel),
            CHANNELS,
        )
    except Refused as r:
        return r.status, r.code
    return OK


def test_every_cell_of_the_consumer_matrix_gets_the_contracts_answer():
    cells = consumer_cells()
    assert len(cells) == 2 * 2 * 2 * 6 * 2 * 4
    wrong = [
        (c.label(), consumer_answer(c), expected_for_consumer(c))
        for c in cells
        if consumer_answer(c) != expected_for_consumer(c)
    ]
    assert not wrong, f"{len(wrong)} cells differ, e.g. {wrong[:5]}"
    assert set(Counter(expected_for_consumer(c) for c in cells)) == OUTCOMES - {(403, "permission_denied")}


def test_a_consumers_upload_has_source_consumer_and_an_agent_cannot_claim_it():
    assert check_source("widget", Principal("consumer-1", ACCOUNT, "consumer")) == "consumer"
    assert check_source("consumer", Principal("consumer-1", ACCOUNT, "consumer")) == "consumer"
    for principal in (None, Principal("agent-1", ACCOUNT, "agent")):
        with pytest.raises(Refused) as r:
            check_source("consumer", principal)
        assert (r.value.status, r.value.code) == (422, "invalid_request")


def test_a_consumer_token_is_refused_on_the_bots_topic_and_in_another_account():
    on = ev.AccountSettingsDocument(feature_enabled=True, file_sharing_enabled=True, consumer_uploads_enabled=True)
    own = Conversation(ACCOUNT, "conv-1", "consumer-1", "web", authenticated=True, open=True)
    with pytest.raises(Refused) as r:
        check_sender(Principal("consumer-1", ACCOUNT, "consumer"), ACCOUNT, on, "local", own, CHANNELS, via="topic")
    assert r.value.code == "permission_denied"
    with pytest.raises(Refused) as r:
        check_sender(Principal("consumer-1", OTHER, "consumer"), ACCOUNT, on, "local", own, CHANNELS)
    assert r.value.code == "permission_denied"


CONTENT_OF = {
    "jpeg": lambda: corpus.to_jpeg(corpus.photo(16, 16)),
    "png": lambda: corpus.to_png(corpus.photo(16, 16)),
    "gif": lambda: corpus.to_gif(corpus.photo(16, 16)),
    "heic": lambda: phone.heic(corpus.photo(16, 16)),
    "webp": phone.webp_with_alpha,
    "svg": lambda: b'<svg xmlns="http://www.w3.org/2000/svg"/>',
    "bmp": lambda: b"BM" + bytes(60),
}


def test_every_file_type_against_every_accepted_list_gets_the_contracts_answer():
    contents = {kind: make()[:SNIFF_BYTES] for kind, make in CONTENT_OF.items()}

    def answer(kind, accepted):
        try:
            check_type(sniff_content_type(contents[kind]), ev.AccountSettingsDocument(accepted_types=list(accepted)))
        except Refused as r:
            return r.status, r.code
        return OK

    cells = type_cells()
    wrong = [
        (kind, accepted, answer(kind, accepted))
        for kind, accepted in cells
        if answer(kind, accepted) != expected_for_type(kind, accepted)
    ]
    assert not wrong, wrong
    assert {expected_for_type(*c) for c in cells} == {OK, (415, "unsupported_type")}


def test_an_account_without_accepted_types_in_its_stored_settings_accepts_the_photo_types():
    stored = {"feature_enabled": True, "file_sharing_enabled": True, "max_image_dimension": 800, "retention": "P13M"}
    assert ev.AccountSettingsDocument.model_validate(stored).accepted_types == ["image/jpeg", "image/png", "image/gif"]


def caps(role, settings, state="open", channel="web", source=None, account=ACCOUNT):
    return capabilities(
        Principal("u", account, role), ACCOUNT, settings, conversation_for(state, channel), CHANNELS, source
    )


def test_capabilities_visible_with_permission_once_the_account_team_enabled_the_feature():
    on = dict(feature_enabled=True, file_sharing_enabled=True)
    full = ev.AccountSettingsDocument(**on, permissions={"agent": ["send_files_local"]})
    assert caps("agent", full) == type(caps("agent", full))(True, True, None)
    # The account setting off: icon shown (permission + feature) but not clickable.
    off = ev.AccountSettingsDocument(feature_enabled=True, permissions={"agent": ["send_files_local"]})
    assert (caps("agent", off).visible, caps("agent", off).enabled, caps("agent", off).reason) == (
        True,
        False,
        "file_sharing_disabled",
    )
    # Feature off by the account team: hidden whatever else.
    hidden = ev.AccountSettingsDocument(file_sharing_enabled=True, permissions={"agent": ["send_files_local"]})
    assert (caps("agent", hidden).visible, caps("agent", hidden).reason) == (False, "feature_disabled")
    # No permission: hidden; agent_manager without permission too.
    assert (caps("agent_manager", full).visible, caps("agent_manager", full).reason) == (False, "permission_denied")
    assert caps("consumer", full).visible is False
    # Greyed out for a closed conversation, an sms conversation, an unknown one.
    for state, channel, reason in (
        ("closed", "web", "conversation_closed"),
        ("open", "sms", "channel_not_supported"),
        ("unknown", "web", "conversation_not_found"),
        ("resumed", "web", None),
    ):
        c = caps("agent", full, state, channel)
        assert (c.visible, c.enabled, c.reason) == (True, reason is None, reason), (state, channel)
    # Asking for the widget source when only local is held.
    assert (caps("agent", full, source="widget").visible, caps("agent", full, source="widget").reason) == (
        False,
        "permission_denied",
    )
    # A token of another account sees nothing.
    assert caps("agent", full, account=OTHER).visible is False


def test_capabilities_for_the_conversations_consumer():
    def consumer_caps(state="open", channel="web", **settings):
        document = ev.AccountSettingsDocument(
            **{"feature_enabled": True, "file_sharing_enabled": True, "consumer_uploads_enabled": True, **settings}
        )
        c = capabilities(
            Principal("consumer-1", ACCOUNT, "consumer"),
            ACCOUNT,
            document,
            consumer_conversation(state, channel),
            CHANNELS,
        )
        return c.visible, c.enabled, c.reason

    assert consumer_caps() == (True, True, None)
    assert consumer_caps(consumer_uploads_enabled=False) == (False, False, "consumer_uploads_disabled")
    assert consumer_caps(feature_enabled=False) == (False, False, "feature_disabled")
    # Shown (the feature and the consumer setting are on) but not clickable.
    assert consumer_caps(file_sharing_enabled=False) == (True, False, "file_sharing_disabled")
    assert consumer_caps("closed") == (True, False, "conversation_closed")
    assert consumer_caps("open", "sms") == (True, False, "channel_not_supported")
    assert consumer_caps("other_consumer") == (True, False, "conversation_not_found")


@pytest.mark.parametrize(
    "caption,ok",
    [
        (None, True),
        ("", True),
        ("a" * 2000, True),
        ("é" * 2000, True),
        ("line one\nline two\tend", True),
        ("a" * 2001, False),
        ("bell\x07", False),
        ("nul\x00", False),
        ("esc\x1b[31m", False),
        ("del\x7f", False),
        ("cr\r", False),
        ("evil\u202egnp.exe", False),
    ],
)
def test_caption_rules(caption, ok):
    if ok:
        assert check_caption(caption, 2000) == (caption or None)
    else:
        with pytest.raises(Refused) as r:
            check_caption(caption, 2000)
        assert (r.value.status, r.value.code) == (422, "invalid_request")


def test_a_multi_line_caption_from_a_browser_form_is_accepted_and_stored_with_plain_line_breaks():
    # HTML forms send each line break as CRLF; 1000 lines of one character is 1999 characters, not 2998.
    assert check_caption("line one\r\nline two", 2000) == "line one\nline two"
    assert check_caption("\r\n".join("x" * 1000), 2000) == "\n".join("x" * 1000)


def test_bot_content_is_size_checked_before_decoding():
    limit = 5 * 1024 * 1024
    assert decode_content(base64.b64encode(b"x" * limit).decode(), limit) == b"x" * limit
    with pytest.raises(Refused) as r:
        decode_content(base64.b64encode(b"x" * (limit + 1)).decode(), limit)
    assert r.value.code == "file_too_large"
    with pytest.raises(Refused) as r:
        decode_content("A" * (max_b64_chars(limit) + 1), limit)
    assert r.value.code == "file_too_large"
    with pytest.raises(Refused) as r:
        decode_content("not base64 at all!", limit)
    assert r.value.code == "invalid_request"


def test_capabilities_offer_the_accounts_sendable_types_and_nothing_to_another_account():
    settings = ev.AccountSettingsDocument(accepted_types=["image/jpeg", "image/heic", "application/pdf"])
    own, other = (
        Principal(sub="a-1", account_id="acme", role="agent"),
        Principal(sub="a-1", account_id="rival", role="platform"),
    )
    assert sendable_types(own, "acme", settings) == ["image/jpeg", "image/heic"]  # documents are not sent yet
    assert sendable_types(other, "acme", settings) == []
