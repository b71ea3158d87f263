"""Identifiers: hostile ids in every id position of every route of both HTTP
services, in token claims, in input events and in bot records. Lookups answer 404, writes 422, a
token 401, never a 5xx; input events are dropped and counted; nothing is stored under such an id."""

from __future__ import annotations

import base64
import json
import time

import jwt
import psycopg
import pytest

from shared.contract import events as ev
from shared.contract.auth import mint_service_token
from shared.contract.ids import ID_PATTERN
from shared.contract.topics import ACCOUNT_SETTINGS, CONVERSATION_EVENTS, FILE_SHARE_REQUESTED, GDPR_FORGET
from shared.settings import Settings
from tests.support import raw_request, sample, scrape, unique, wait_until
from tests.uploadsupport import bot_outcomes, png_bytes, publish_many, share_request

# As sent in a path (percent-encoded where a client must), and as the server decodes it.
HOSTILE = {
    "NUL": ("nul%00x", "nul\x00x"),
    "newline": ("x%0Ay", "x\ny"),
    "10 kB": ("a" * 10240, "a" * 10240),
    "RTL override": ("txt%E2%80%AEgpj.exe", "txt\u202egpj.exe"),
    "..": ("..", ".."),
    "%2F": ("a%2F..%2Fb", "a/../b"),
    "lone .": (".", "."),
}
SERVICES = {"upload": "FS_UPLOAD_PORT", "delivery": "FS_DELIVERY_PORT"}
# Every route of both apps with a path parameter: what it is (a lookup answers 404 to an id of the
# wrong shape, a write 422) and the role whose token calls it. A page's parameter is a file name.
ROUTES_WITH_IDS = {
    ("upload", "POST", "/v1/accounts/{account_id}/conversations/{conversation_id}/files"): ("write", "agent"),
    ("upload", "GET", "/v1/accounts/{account_id}/conversations/{conversation_id}/capabilities"): ("lookup", "agent"),
    ("upload", "GET", "/v1/accounts/{account_id}/settings"): ("lookup", "agent"),
    ("upload", "PUT", "/v1/accounts/{account_id}/settings"): ("write", "platform"),
    ("upload", "GET", "/v1/files/{file_id}"): ("lookup", "agent"),
    ("upload", "GET", "/agent/{name:path}"): ("page", None),
    ("upload", "HEAD", "/agent/{name:path}"): ("page", None),
    ("delivery", "GET", "/v1/files/{file_id}/content"): ("lookup", "agent"),
    ("delivery", "HEAD", "/v1/files/{file_id}/content"): ("lookup", "agent"),
    ("delivery", "POST", "/v1/files/{file_id}/link"): ("write", "agent"),
    ("delivery", "GET", "/v1/conversations/{conversation_id}/messages"): ("lookup", "agent"),
    ("delivery", "GET", "/internal/v1/files/{file_id}/publication"): ("lookup", "service"),
    ("delivery", "GET", "/consumer/{name:path}"): ("page", None),
    ("delivery", "HEAD", "/consumer/{name:path}"): ("page", None),
}
NO_ID_ROUTES = {
    (service, method, path)
    for service in SERVICES
    for method in ("GET", "HEAD")
    for path in ("/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc")
} | {
    (service, "GET", path)
    for service, page in (("upload", "agent"), ("delivery", "consumer"))
    for path in ("/healthz", "/readyz", "/metrics", f"/{page}/config.json", f"/{page}")
}
ID_COLUMNS = ("account_id", "conversation_id", "consumer_id", "request_id")
BOUNDARY = "hostileidsboundary"


def app_routes(client) -> set[tuple[str, str, str]]:
    """Every (service, method, path) the two FastAPI apps serve, from the apps themselves."""
    from services.delivery.app import bootstrap as delivery
    from services.upload.app import bootstrap as upload

    settings = Settings(
        auth_secret=client.env["FS_AUTH_SECRET"],
        master_key=client.env["FS_MASTER_KEY"],
        database_url="postgresql://unused@127.0.0.1:1/unused",
    )
    return {
        (name, method, route.path)
        for name, bootstrap in (("upload", upload), ("delivery", delivery))
        for route in bootstrap(settings).http.routes
        for method in route.methods
    }


def expected(kind: str, hostile: str) -> tuple[int, str | None]:
    if kind == "page":
        return 404, None
    if hostile == "%2F":  # the decoded path has more segments: no route matches it at all
        return 404, "not_found"
    return (404, "not_found") if kind == "lookup" else (422, "invalid_request")


def multipart_photo() -> tuple[bytes, str]:
    body = (
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="p.png"\r\n'
            f"Content-Type: image/png\r\n\r\n"
        ).encode()
        + png_bytes()
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={BOUNDARY}"


def settings_document() -> bytes:
    """The document Client.enable_account stores: a PUT of it changes nothing."""
    both = ["send_files_local", "send_files_widget"]
    return json.dumps(
        {
            "feature_enabled": True,
            "file_sharing_enabled": True,
            "permissions": {"agent": both, "agent_manager": both, "bot": ["send_files_local"]},
            "max_image_dimension": 800,
            "retention": "P13M",
        }
    ).encode()


def token_with(client, role: str, **claims) -> str:
    """A correctly signed token whose claims may hold anything (mint_token refuses hostile ids)."""
    return jwt.encode(
        {"role": role, "exp": int(time.time()) + 600, **claims}, client.env["FS_AUTH_SECRET"], algorithm="HS256"
    )


def token_for(client, world: dict, role: str | None) -> str | None:
    """The token a route is called with: a user's of the world's account, upload's service token, or none."""
    if role == "service":
        return mint_service_token(client.env["FS_AUTH_SECRET"], "upload")
    return client.token(world["account_id"], role, "user-1") if role else None


def call(client, service: str, method: str, path: str, token: str | None) -> tuple[int, dict, bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = b""
    if method == "POST" and path.endswith("/files"):
        body, headers["Content-Type"] = multipart_photo()
    elif method == "PUT":
        body, headers["Content-Type"] = settings_document(), "application/json"
    return raw_request(int(client.env[SERVICES[service]]), method, path, headers, body)


def invalid_id_rows(client) -> set[tuple]:
    """Every stored row, in every schema, holding an id that is not of the contract's shape."""
    found = set()
    with psycopg.connect(client.env["FS_DATABASE_URL"]) as conn:
        columns = conn.execute(
            "SELECT table_schema, table_name, column_name FROM information_schema.columns "
            "WHERE column_name = ANY(%s) AND table_schema NOT IN ('pg_catalog', 'information_schema')",
            (list(ID_COLUMNS),),
        ).fetchall()
        for schema, table, column in columns:
            rows = conn.execute(
                f'SELECT "{column}" FROM "{schema}"."{table}" WHERE "{column}" !~ %s', (f"^{ID_PATTERN}$",)
            ).fetchall()
            found |= {(schema, table, column, row[0]) for row in rows}
    return found


def stored_objects(client) -> set[str]:
    return {str(p.relative_to(client.data_dir)) for p in client.all_stored_files() if "s3" in p.parts}


@pytest.fixture(scope="module")
def world(client):
    """An account with a published photo in an open conversation: every valid id a route can take."""
    account, conversation, consumer = unique("acct"), unique("conv"), unique("consumer")
    client.enable_account(account)
    client.open_conversation(account, conversation, consumer)
    r = client.upload(account, conversation, png_bytes())
    assert r.status_code == 202, r.text
    file_id = r.json()["file_id"]
    client.wait_published(account, [file_id])
    return {
        "account_id": account,
        "conversation_id": conversation,
        "file_id": file_id,
        "name": "index.html",
        "consumer": consumer,
    }


def path_of(template: str, values: dict) -> str:
    return template.replace("{name:path}", values["name"]).format(**values)


def test_every_route_of_both_services_is_walked(client):
    assert app_routes(client) == set(ROUTES_WITH_IDS) | NO_ID_ROUTES


def test_each_route_answers_its_valid_ids(client, world):
    """The baseline: with valid ids and the same tokens every route answers, so a refusal below is the id's."""
    for (service, method, template), (_, role) in ROUTES_WITH_IDS.items():
        token = token_for(client, world, role)
        status, _, body = call(client, service, method, path_of(template, world), token)
        assert status in (200, 202), (service, method, template, status, body[:300])
        if status == 202:  # the photo sent: published before the walk counts stored objects
            client.wait_published(world["account_id"], [json.loads(body)["file_id"]])


def test_a_hostile_id_in_any_path_position_is_refused_and_nothing_is_stored(client, world):
    rows_before, objects_before = invalid_id_rows(client), stored_objects(client)
    answers = []
    for (service, method, template), (kind, role) in ROUTES_WITH_IDS.items():
        token = token_for(client, world, role)
        for param in (p for p in world if "{" + p in template):
            for name, (in_path, _) in HOSTILE.items():
                status, _, body = call(client, service, method, path_of(template, {**world, param: in_path}), token)
                code = json.loads(body)["error"]["code"] if body and kind != "page" else None
                want = expected(kind, name)
                answers.append((f"{method} {template} {param}={name}", (status, code if want[1] else None), want))
    wrong = [
        (where, got, want)
        for where, got, want in answers
        if got != want and not (got[0] == want[0] and want[1] and got[1] is None and "HEAD" in where)
    ]  # a HEAD answer has no body
    assert not wrong, wrong
    print(
        f"{len(answers)} requests with a hostile id: "
        + ", ".join(
            f"{code} x{sum(1 for _, got, _ in answers if got[0] == code)}"
            for code in sorted({a[1][0] for a in answers})
        )
    )
    assert invalid_id_rows(client) == rows_before, "a row was stored under a hostile id"
    assert stored_objects(client) == objects_before, "an object was stored by a refused request"
    # No settings were written for any of them: the account's own document is still the valid one.
    status, _, body = call(
        client,
        "upload",
        "GET",
        f"/v1/accounts/{world['account_id']}/settings",
        client.token(world["account_id"], "agent", "user-1"),
    )
    assert status == 200 and json.loads(body)["permissions"]["bot"] == ["send_files_local"]


@pytest.mark.parametrize("claim", ["acct", "sub"])
def test_a_token_whose_claims_hold_a_hostile_id_is_401_on_every_route(client, world, claim):
    answers = []
    for (service, method, template), (_, role) in ROUTES_WITH_IDS.items():
        if role in (None, "service"):
            continue  # a page needs no token; a service token holds no account or user
        for name, (_, decoded) in HOSTILE.items():
            claims = {"acct": world["account_id"], "sub": "user-1", claim: decoded}
            status, headers, body = call(
                client, service, method, path_of(template, world), token_with(client, role, **claims)
            )
            code = json.loads(body)["error"]["code"] if body else "unauthenticated"
            answers.append((f"{method} {template} {claim}={name}", status, code, headers.get("www-authenticate")))
    wrong = [a for a in answers if a[1:] != (401, "unauthenticated", "Bearer")]
    assert not wrong, wrong


def hostile_variants(valid: dict[str, str]) -> list[tuple[str, dict]]:
    """`valid` with one id replaced by a hostile value, for every id and every hostile value."""
    return [(f"{field}={name}", {**valid, field: decoded}) for field in valid for name, (_, decoded) in HOSTILE.items()]


def test_conversation_events_with_hostile_ids_are_dropped_counted_and_the_next_one_is_applied(client):
    account, conversation, consumer = unique("acct"), unique("conv"), unique("consumer")
    client.enable_account(account)
    before = {
        s: sample(scrape(client.env, s), "fileshare_invalid_events_total", topic=CONVERSATION_EVENTS)
        for s in ("upload", "delivery")
    }
    bad = [
        ev.ConversationEvent.model_construct(event_type="conversation.opened", channel="web", authenticated=True, **ids)
        for _, ids in hostile_variants(
            {"account_id": account, "conversation_id": conversation, "consumer_id": consumer}
        )
    ]
    publish_many(client, [(CONVERSATION_EVENTS, conversation, event) for event in bad])  # one partition
    client.open_conversation(account, conversation, consumer)  # the good one behind them, applied
    wait_until(
        lambda: (
            call(
                client,
                "delivery",
                "GET",
                f"/v1/conversations/{conversation}/messages",
                client.token(account, "agent", "user-1"),
            )[0]
            == 200
        ),
        what="delivery to learn the conversation",
    )  # 404 until then
    for service in before:
        wait_until(
            lambda: (
                sample(scrape(client.env, service), "fileshare_invalid_events_total", topic=CONVERSATION_EVENTS)
                == before[service] + len(bad)
            ),
            what=f"{service} to count {len(bad)} invalid conversation events",
        )
    assert not [
        row
        for row in invalid_id_rows(client)
        if row[1] == "conversations" and (account in row[3] or conversation in row[3] or consumer in row[3])
    ]


def test_forget_requests_and_settings_with_hostile_ids_are_dropped_and_counted(client):
    account, consumer = unique("acct"), unique("consumer")
    forget_before = sample(scrape(client.env, "retention"), "fileshare_invalid_events_total", topic=GDPR_FORGET)
    settings_before = {
        s: sample(scrape(client.env, s), "fileshare_invalid_events_total", topic=ACCOUNT_SETTINGS)
        for s in ("sanitizer", "resizer", "retention")
    }
    forgets = [
        ev.GdprForget.model_construct(**ids)
        for _, ids in hostile_variants({"request_id": unique("req"), "account_id": account, "consumer_id": consumer})
    ]
    settings = [
        ev.AccountSettings.model_construct(account_id=decoded, **json.loads(settings_document()))
        for _, decoded in HOSTILE.values()
    ]
    publish_many(
        client,
        [(GDPR_FORGET, consumer, f) for f in forgets]
        + [(ACCOUNT_SETTINGS, f"hostile-{i}", s) for i, s in enumerate(settings)],
    )
    wait_until(
        lambda: (
            sample(scrape(client.env, "retention"), "fileshare_invalid_events_total", topic=GDPR_FORGET)
            == forget_before + len(forgets)
        ),
        what=f"retention to count {len(forgets)} invalid forget requests",
    )
    for service, before in settings_before.items():
        wait_until(
            lambda: (
                sample(scrape(client.env, service), "fileshare_invalid_events_total", topic=ACCOUNT_SETTINGS)
                == before + len(settings)
            ),
            what=f"{service} to count {len(settings)} invalid settings records",
        )
    assert not [row for row in invalid_id_rows(client) if account in row[3] or consumer in row[3]]


def test_bot_records_with_hostile_ids_are_rejected_or_dropped(client, world):
    account, conversation = world["account_id"], world["conversation_id"]
    bot = client.token(account, "bot", "bot-1")
    photo = base64.b64encode(png_bytes()).decode()
    before = sample(scrape(client.env, "upload"), "fileshare_invalid_events_total", topic=FILE_SHARE_REQUESTED)

    def record(**ids) -> ev.FileShareRequested:
        fields = {"request_id": unique("req"), "account_id": account, "conversation_id": conversation, **ids}
        return ev.FileShareRequested.model_construct(token=bot, filename="p.png", content_b64=photo, **fields)

    rejected = [
        record(**{field: decoded}) for field in ("account_id", "conversation_id") for _, decoded in HOSTILE.values()
    ]
    dropped = [record(request_id=decoded) for _, decoded in HOSTILE.values()]
    good = share_request(bot, account, conversation, png_bytes())
    publish_many(client, [(FILE_SHARE_REQUESTED, conversation, r) for r in rejected + dropped + [good]])
    outcomes = bot_outcomes(client, {r.request_id for r in rejected} | {good.request_id})
    for r in rejected:
        (event,) = outcomes[r.request_id]
        assert (event.event_type, event.reason, event.stage) == ("file.rejected", "invalid_request", "upload"), r
        assert "unknown" in (event.account_id, event.conversation_id) and event.detail.isascii()
    assert outcomes[good.request_id][0].event_type == "file.uploaded"
    wait_until(
        lambda: (
            sample(scrape(client.env, "upload"), "fileshare_invalid_events_total", topic=FILE_SHARE_REQUESTED)
            == before + len(dropped)
        ),
        what=f"upload to count {len(dropped)} bot records without a valid request_id",
    )
    assert not [row for row in invalid_id_rows(client) if row[3] in {d for _, d in HOSTILE.values()}]
