"""Account settings (who may change what, validation), capabilities and the OpenAPI page."""

from __future__ import annotations

import psycopg
from aiokafka import TopicPartition
from fastapi.routing import APIRoute
from psycopg import sql

from shared.adapters.kafka import GroupOffsets, Outgoing, Publisher
from shared.contract import events as ev
from shared.contract.topics import ACCOUNT_SETTINGS
from shared.projections.account_settings import IMAGE_STAGES, follower_group
from shared.settings import Settings
from tests.support import sample, scrape, unique, wait_until

PHOTO_TYPES = ["image/jpeg", "image/png", "image/gif"]
DOC = {
    "feature_enabled": True,
    "file_sharing_enabled": True,
    "permissions": {"agent": ["send_files_local"], "agent_manager": [], "bot": []},
    "max_image_dimension": 800,
    "retention": "P13M",
    "accepted_types": PHOTO_TYPES,
    "consumer_uploads_enabled": False,
}


def put(client, account, doc, role="platform", token_account=None):
    return client.http.put(
        f"{client.upload_url}/v1/accounts/{account}/settings",
        json=doc,
        headers=client.auth(token_account or account, role, f"{role}-1"),
    )


def get(client, account, role="agent"):
    return client.http.get(
        f"{client.upload_url}/v1/accounts/{account}/settings", headers=client.auth(account, role, f"{role}-1")
    )


def code(r):
    return r.status_code, r.json()["error"]["code"]


def test_defaults_are_all_off(client):
    doc = get(client, unique("acct")).json()
    assert doc == {
        "feature_enabled": False,
        "file_sharing_enabled": False,
        "permissions": {"agent": [], "agent_manager": [], "bot": []},
        "max_image_dimension": 800,
        "retention": "P13M",
        "accepted_types": PHOTO_TYPES,
        "consumer_uploads_enabled": False,
    }


def test_consumer_uploads_are_off_until_set_and_an_admin_may_turn_them_on(client):
    account = unique("acct")
    before_v3 = {k: v for k, v in DOC.items() if k not in ("accepted_types", "consumer_uploads_enabled")}
    assert put(client, account, before_v3).json()["consumer_uploads_enabled"] is False
    assert put(client, account, {**DOC, "consumer_uploads_enabled": True}, role="admin").status_code == 200
    assert get(client, account).json()["consumer_uploads_enabled"] is True
    for wrong in ("maybe", None, [True]):
        r = put(client, account, {**DOC, "consumer_uploads_enabled": wrong})
        assert code(r) == (422, "invalid_request"), (wrong, r.text)
        assert "consumer_uploads_enabled" in r.json()["error"]["message"]
    assert get(client, account).json()["consumer_uploads_enabled"] is True, "nothing was stored"


def test_accepted_types_are_the_photo_types_until_set_and_any_subset_of_the_contracts_list(client):
    account = unique("acct")
    before_v3 = {k: v for k, v in DOC.items() if k != "accepted_types"}  # a document of a version-2 client
    assert put(client, account, before_v3).json()["accepted_types"] == PHOTO_TYPES
    every = [
        *PHOTO_TYPES,
        "image/heic",
        "image/webp",
        "application/pdf",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    ]
    for accepted in (every, ["image/heic", "image/webp"], ["application/pdf"], []):
        assert put(client, account, {**DOC, "accepted_types": accepted}).status_code == 200
        assert get(client, account).json()["accepted_types"] == accepted
    for wrong in (
        ["image/heif"],
        ["image/svg+xml"],
        ["image/jpeg", "text/html"],
        ["IMAGE/JPEG"],
        "image/jpeg",
        [None],
        ["application/vnd.ms-word.document.macroEnabled.12"],
    ):
        r = put(client, account, {**DOC, "accepted_types": wrong})
        assert code(r) == (422, "invalid_request"), (wrong, r.text)
        assert "accepted_types" in r.json()["error"]["message"]
    assert get(client, account).json()["accepted_types"] == [], "nothing was stored"


def test_account_team_sets_everything_admin_all_but_the_feature_flag(client):
    account = unique("acct")
    assert put(client, account, DOC).status_code == 200
    assert get(client, account).json() == DOC
    # The admin changes the account setting and permissions, keeping feature_enabled as it is.
    admin_doc = {**DOC, "file_sharing_enabled": False, "permissions": {"agent": [], "bot": ["send_files_local"]}}
    r = put(client, account, admin_doc, role="admin")
    assert r.status_code == 200, r.text
    admin_doc.pop("feature_enabled")
    r = put(client, account, admin_doc, role="admin")  # omitted: kept, not reset to the default
    assert r.status_code == 200 and r.json()["feature_enabled"] is True
    assert get(client, account).json()["permissions"]["bot"] == ["send_files_local"]
    # But not the feature flag itself.
    assert code(put(client, account, {**DOC, "feature_enabled": False}, role="admin")) == (403, "permission_denied")
    assert get(client, account).json()["feature_enabled"] is True
    for role in ("agent", "agent_manager", "bot", "consumer"):
        assert code(put(client, account, DOC, role=role)) == (403, "permission_denied"), role
    assert code(put(client, account, DOC, token_account=unique("acct"))) == (403, "permission_denied")
    assert code(get(client, account, role="consumer")) == (403, "permission_denied")


def test_a_write_is_read_back_at_once_even_right_after_another(client):
    """Read-your-writes: a GET right after a PUT returns that PUT's document, also when an earlier
    PUT's record is still on its way through the instance's view of account.settings."""
    account = unique("acct")
    stale = []
    for i in range(15):
        for setting in (False, True):
            assert put(client, account, {**DOC, "file_sharing_enabled": setting}).status_code == 200
            if get(client, account).json()["file_sharing_enabled"] is not setting:
                stale.append((i, setting))
    assert not stale, f"an earlier document was read back after a write: {stale}"


def test_settings_document_is_validated(client):
    account = unique("acct")
    invalid = {
        "unknown profile": {**DOC, "permissions": {"supervisor": ["send_files_local"]}},
        "unknown permission": {**DOC, "permissions": {"agent": ["send_files_email"]}},
        "unknown key": {**DOC, "colour": "blue"},
        "dimension 99": {**DOC, "max_image_dimension": 99},
        "dimension 4097": {**DOC, "max_image_dimension": 4097},
        "retention in words": {**DOC, "retention": "13 months"},
        "zero retention": {**DOC, "retention": "P0D"},
        "retention that overflows every date": {**DOC, "retention": "P999999999D"},
        "feature flag not a bool": {**DOC, "feature_enabled": "maybe"},
    }
    for name, doc in invalid.items():
        r = put(client, account, doc)
        assert code(r) == (422, "invalid_request"), (name, r.text)
    assert get(client, account).json()["feature_enabled"] is False, "nothing was stored"
    for dimension, retention in ((100, "P1Y2M3DT4H5M6S"), (4096, "PT5S"), (800, "P2W")):
        assert (
            put(client, account, {**DOC, "max_image_dimension": dimension, "retention": retention}).status_code == 200
        )


def test_capabilities_body_in_each_state(client):
    account, consumer = unique("acct"), unique("consumer")
    web, closed, sms = unique("conv"), unique("conv"), unique("conv")
    client.conversation(account, web, consumer)
    client.conversation(account, closed, consumer)
    client.conversation(account, closed, consumer, kind="conversation.closed")
    client.conversation(account, sms, consumer, channel="sms")
    max_bytes = int(client.env.get("FS_MAX_UPLOAD_BYTES", 5 * 1024 * 1024))

    def body(visible, enabled, reason):
        return {
            "visible": visible,
            "enabled": enabled,
            "reason": reason,
            "accepted_types": ["image/jpeg", "image/png", "image/gif"],
            "max_bytes": max_bytes,
        }

    # The account team has not enabled the feature: the icon is hidden.
    assert client.capabilities(account, web) == body(False, False, "feature_disabled")
    # Enabled by the account team, turned off in the account settings: shown, not clickable.
    client.enable_account(account, file_sharing_enabled=False)
    assert client.capabilities(account, web) == body(True, False, "file_sharing_disabled")
    client.enable_account(account)
    for conversation, expected in (
        (web, body(True, True, None)),
        (closed, body(True, False, "conversation_closed")),
        (sms, body(True, False, "channel_not_supported")),
    ):
        # Conversation events reach the service through its view: wait for the final answer.
        wait_until(
            lambda: client.capabilities(account, conversation) == expected,
            what=f"capabilities of {conversation} to be {expected}",
        )
    # A profile without the permission does not see the icon.
    client.enable_account(account, permissions={"agent": [], "agent_manager": ["send_files_local"], "bot": []})
    assert client.capabilities(account, web) == body(False, False, "permission_denied")
    assert client.capabilities(account, web, role="agent_manager") == body(True, True, None)
    # The account's own list of types.
    client.enable_account(account, accepted_types=["image/webp", "image/jpeg", "image/heic"])
    assert client.capabilities(account, web)["accepted_types"] == ["image/webp", "image/jpeg", "image/heic"]


# Every public route of the upload service and its error codes, exactly.
UPLOAD_ROUTES = {
    ("post", "/v1/accounts/{account_id}/conversations/{conversation_id}/files"): {
        (401, "unauthenticated"),
        (403, "feature_disabled"),
        (403, "file_sharing_disabled"),
        (403, "permission_denied"),
        (403, "consumer_uploads_disabled"),
        (404, "conversation_not_found"),
        (409, "conversation_closed"),
        (409, "channel_not_supported"),
        (413, "file_too_large"),
        (415, "unsupported_type"),
        (422, "invalid_request"),
        (429, "rate_limited"),
        (503, "unavailable"),
    },
    ("put", "/v1/accounts/{account_id}/settings"): {
        (401, "unauthenticated"),
        (403, "permission_denied"),
        (422, "invalid_request"),
        (503, "unavailable"),
    },
    # A lookup naming an id not of the contract's shape is 404 not_found.
    ("get", "/v1/accounts/{account_id}/settings"): {
        (401, "unauthenticated"),
        (403, "permission_denied"),
        (404, "not_found"),
    },
    ("get", "/v1/accounts/{account_id}/conversations/{conversation_id}/capabilities"): {
        (401, "unauthenticated"),
        (404, "not_found"),
        (422, "invalid_request"),
    },
    ("get", "/v1/files/{file_id}"): {(401, "unauthenticated"), (404, "not_found")},
}


def test_openapi_lists_every_endpoint_with_its_error_codes(client):
    spec = client.http.get(f"{client.upload_url}/openapi.json").json()
    paths = spec["paths"]
    operations = {(method, path) for path, ops in paths.items() for method in ops}

    def codes(path, method):
        responses = paths[path][method]["responses"]
        return {
            (int(status), c.strip("` "))
            for status, r in responses.items()
            if int(status) >= 400
            for c in r["description"].removeprefix("error codes: ").split(",")
        }

    # The spec holds exactly the upload service's public routes (the app's own list, health and
    # metrics endpoints excepted: they are not part of the API) ...
    from services.upload.app import bootstrap  # builds the service only: nothing connects before it serves

    app = bootstrap(Settings(**{k[3:].lower(): v for k, v in client.env.items() if k.startswith("FS_")})).http
    public = {
        (method.lower(), route.path)
        for route in app.routes
        if isinstance(route, APIRoute) and route.include_in_schema
        for method in route.methods
    }
    assert operations == public == set(UPLOAD_ROUTES)
    # ... each with exactly the contract's error codes, nothing more, nothing less.
    for (method, path), expected in UPLOAD_ROUTES.items():
        assert codes(path, method) == expected, (method, path)
        assert "200" in paths[path][method]["responses"] or "202" in paths[path][method]["responses"], path
    upload = "/v1/accounts/{account_id}/conversations/{conversation_id}/files"
    form = paths[upload]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]
    assert set(form) == {"file", "caption", "source"}
    key = next(p for p in paths[upload]["post"]["parameters"] if p["name"].lower() == "idempotency-key")
    assert key["schema"]["maxLength"] == 200
    # The settings body is validated in the handler (after authentication) but still documented.
    body = paths["/v1/accounts/{account_id}/settings"]["put"]["requestBody"]["content"]["application/json"]["schema"]
    schema = spec["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]]
    assert set(schema["properties"]) == set(DOC)
    source = next(
        p
        for p in paths["/v1/accounts/{account_id}/conversations/{conversation_id}/capabilities"]["get"]["parameters"]
        if p["name"] == "source"
    )
    assert source["schema"]["enum"] == ["local", "widget"]
    assert client.http.get(f"{client.upload_url}/docs").status_code == 200


def image_stage_copies(client, account) -> dict[str, int | None]:
    """max_image_dimension in the sanitizer's and the resizer's own copy of the account's settings."""
    copies = {}
    with psycopg.connect(client.env["FS_DATABASE_URL"]) as conn:
        for service in IMAGE_STAGES:
            row = conn.execute(
                sql.SQL("SELECT document FROM {}.account_settings WHERE account_id = %s").format(
                    sql.Identifier(service)
                ),
                (account,),
            ).fetchone()
            copies[service] = row[0]["max_image_dimension"] if row else None
    return copies


def test_a_settings_change_is_answered_once_the_image_stages_hold_it(client):
    """So a photo sent right after the answer is resized with the new settings."""
    account = unique("acct")
    timed_out = sample(scrape(client.env, "upload"), "fileshare_settings_apply_seconds_count", outcome="timed_out")
    for dimension in (640, 320):
        assert put(client, account, {**DOC, "max_image_dimension": dimension}).status_code == 200
        assert image_stage_copies(client, account) == {"sanitizer": dimension, "resizer": dimension}
    # Held by the stages' own groups, not by waiting out the timeout (a wrong group name would).
    assert (
        sample(scrape(client.env, "upload"), "fileshare_settings_apply_seconds_count", outcome="timed_out") == timed_out
    )


async def test_waiting_for_a_consumer_group_that_never_gets_there_ends_at_the_timeout(client):
    """A stage that is down: the settings PUT stops waiting for it (and names it) instead of hanging."""
    settings = Settings(kafka_bootstrap=client.env["FS_KAFKA_BOOTSTRAP"])
    publisher, offsets = Publisher(settings, "test"), GroupOffsets(settings)
    await publisher.start()
    try:
        account = unique("acct")
        [landed] = await publisher.send([Outgoing(ACCOUNT_SETTINGS, account, ev.AccountSettings(account_id=account))])
        past_it = {TopicPartition(landed.topic, landed.partition): landed.offset + 1}
        behind = await offsets.wait_committed([follower_group("sanitizer"), "fileshare-nobody-settings"], past_it, 2.0)
        assert behind == ["fileshare-nobody-settings"]
    finally:
        await offsets.stop()
        await publisher.stop()
