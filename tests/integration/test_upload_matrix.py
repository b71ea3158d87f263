"""The rules matrix end to end, over HTTP and the bot topic, against the running service.

Every cell of the cartesian product (tests.upload_matrix.all_cells, 3840 cells: role ×
permission set × feature flag × account setting × conversation state × channel × source) goes
through the real service: three HTTP sources as requests, the bot topic as records on
file.share.requested. The same cells are checked against the policy function in
tests/unit/test_upload_policy.py. Accounts and conversations are set up once per combination
of axes (16 accounts + one other, 6 conversations each).
"""

from __future__ import annotations

import asyncio

import httpx

from shared.contract.topics import FILE_SHARE_REQUESTED
from tests.support import conversation_record, unique, wait_until
from tests.upload_matrix import CHANNELS, STATES, all_cells, expected
from tests.uploadsupport import bot_outcomes, outcome_of, png_bytes, publish_many, share_request

ALL = ["send_files_local", "send_files_widget"]
# Capability reason of a conversation once its events are known, with every gate open.
KNOWN_REASON = {
    ("open", "web"): None,
    ("resumed", "web"): None,
    ("open", "sms"): "channel_not_supported",
    ("resumed", "sms"): "channel_not_supported",
    ("closed", "web"): "conversation_closed",
    ("closed", "sms"): "conversation_closed",
}
EVENTS = {
    "open": ["conversation.opened"],
    "closed": ["conversation.opened", "conversation.closed"],
    "resumed": ["conversation.opened", "conversation.closed", "conversation.resumed"],
}


def settings_doc(feature: bool, setting: bool, perms: tuple[str, ...]) -> dict:
    return {
        "feature_enabled": feature,
        "file_sharing_enabled": setting,
        "permissions": {p: list(perms) for p in ("agent", "agent_manager", "bot")},
        "max_image_dimension": 800,
        "retention": "P13M",
    }


async def gather_limited(coros, limit: int = 8):
    semaphore = asyncio.Semaphore(limit)

    async def one(c):
        async with semaphore:
            return await c

    return await asyncio.gather(*(one(c) for c in coros))


def test_matrix_end_to_end(client):
    cells = all_cells()
    photo = png_bytes()
    # --- setup, once per (feature, setting, permissions) and per (state, channel) ---
    configs = sorted({(c.feature_enabled, c.file_sharing_enabled, c.permissions) for c in cells})
    accounts = {cfg: unique("macct") for cfg in configs}
    other_account = unique("mother")
    conversations = {
        (acct, state, channel): unique("mconv")
        for acct in [*accounts.values(), other_account]
        for state in EVENTS
        for channel in CHANNELS
    }
    consumer = unique("mconsumer")
    records = [
        conversation_record(acct, conv, consumer, kind, channel)
        for (acct, state, channel), conv in conversations.items()
        for kind in EVENTS[state]
    ]
    publish_many(client, records)
    for acct in [*accounts.values(), other_account]:
        client.enable_account(acct, permissions={p: ALL for p in ("agent", "agent_manager", "bot")})

    def all_known():
        return all(
            client.capabilities(acct, conv).get("reason") == KNOWN_REASON[(state, channel)]
            for (acct, state, channel), conv in conversations.items()
        )

    wait_until(all_known, timeout=60, interval=0.3, what="the upload service to learn every conversation")
    for cfg, acct in accounts.items():
        r = client.http.put(
            f"{client.upload_url}/v1/accounts/{acct}/settings",
            json=settings_doc(*cfg),
            headers=client.auth(acct, "platform", "account-team"),
        )
        assert r.status_code == 200, r.text

    def target(cell) -> tuple[str, str]:
        acct = accounts[(cell.feature_enabled, cell.file_sharing_enabled, cell.permissions)]
        if cell.state == "unknown":
            return acct, unique("mnone")
        owner = other_account if cell.state == "other_account" else acct
        state = "open" if cell.state == "other_account" else cell.state
        return acct, conversations[(owner, state, cell.channel)]

    # --- HTTP sources, batched ---
    async def send(http: httpx.AsyncClient, cell):
        acct, conv = target(cell)
        form = {"source": cell.source} if cell.source in ("local", "widget") else {}
        r = await http.post(
            f"{client.upload_url}/v1/accounts/{acct}/conversations/{conv}/files",
            files={"file": ("photo.png", photo, "image/png")},
            data=form,
            headers=client.auth(acct, cell.role, unique(cell.role)),
        )
        return r.status_code, (r.json().get("error") or {}).get("code")

    async def send_all_http(http_cells):
        async with httpx.AsyncClient(timeout=60) as http:
            return await gather_limited([send(http, c) for c in http_cells])

    http_cells = [c for c in cells if c.source != "bot_topic"]
    answers = asyncio.run(send_all_http(http_cells))
    wrong = [(c.label(), got, expected(c)) for c, got in zip(http_cells, answers) if got != expected(c)]

    # --- bot topic ---
    topic_cells = [c for c in cells if c.source == "bot_topic"]
    requests = []
    for cell in topic_cells:
        acct, conv = target(cell)
        requests.append(share_request(client.token(acct, cell.role, unique(cell.role)), acct, conv, photo))
    publish_many(client, [(FILE_SHARE_REQUESTED, r.conversation_id, r) for r in requests])
    outcomes = bot_outcomes(client, {r.request_id for r in requests})
    wrong += [
        (c.label(), outcome_of(outcomes[r.request_id]), expected(c))
        for c, r in zip(topic_cells, requests)
        if outcome_of(outcomes[r.request_id]) != expected(c)
    ]

    assert len(cells) == 3840 and {c.state for c in cells} == set(STATES)
    assert not wrong, f"{len(wrong)} of {len(cells)} cells differ: {wrong[:8]}"
