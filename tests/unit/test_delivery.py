"""Delivery's domain code without servers: who may download and see transcripts, signed links.
(The publish handler runs on a real database: tests/integration/test_delivery_handlers.py.)"""

from __future__ import annotations

import time
from urllib.parse import parse_qs

import pytest

from services.delivery.handlers import Denied, StoredMessage, authorize_conversation, authorize_file_access
from shared.contract.auth import Principal
from shared.contract.links import MAX_LINK_TTL, LinkError, audience_of, parse_audience, sign_link, verify_link

# --- authorization ---

MESSAGE = StoredMessage(
    file_id="f",
    account_id="acct-1",
    conversation_id="conv-1",
    consumer_id="cons-1",
    content_type="image/png",
    size_bytes=1,
)


@pytest.mark.parametrize("role", ["agent", "agent_manager", "bot", "admin", "platform"])
def test_every_account_user_may_download(role):
    authorize_file_access(Principal("someone", "acct-1", role), MESSAGE)
    authorize_conversation(Principal("someone", "acct-1", role), "acct-1", "cons-1")


def test_the_conversations_consumer_may_download():
    authorize_file_access(Principal("cons-1", "acct-1", "consumer"), MESSAGE)
    authorize_conversation(Principal("cons-1", "acct-1", "consumer"), "acct-1", "cons-1")


def test_another_consumer_of_the_account_is_forbidden():
    with pytest.raises(Denied) as e:
        authorize_file_access(Principal("cons-2", "acct-1", "consumer"), MESSAGE)
    assert e.value.status == 403
    with pytest.raises(Denied) as e:
        authorize_conversation(Principal("cons-2", "acct-1", "consumer"), "acct-1", "cons-1")
    assert e.value.status == 403


@pytest.mark.parametrize("role", ["agent", "agent_manager", "bot", "admin", "platform", "consumer"])
def test_another_account_never_learns_the_file_exists(role):
    with pytest.raises(Denied) as e:
        authorize_file_access(Principal("cons-1", "acct-2", role), MESSAGE)
    assert (e.value.status, e.value.code) == (404, "not_found")


# --- signed links ---


def _link(file_id="f", audience="account/acct-1", ttl=300, now=None):
    query, expires = sign_link("secret", file_id, audience, ttl, now=now)
    q = {k: v[0] for k, v in parse_qs(query).items()}
    return q, expires


def test_link_round_trip_names_its_audience():
    q, expires = _link()
    assert int(q["exp"]) == expires
    assert verify_link("secret", "f", q["exp"], q["aud"], q["sig"]) == "account/acct-1"


def test_link_lifetime_default_and_cap():
    now = time.time()
    _, expires = _link(ttl=300, now=now)
    assert expires == int(now + 300)
    _, expires = _link(ttl=10 * 3600, now=now)
    assert expires == int(now + MAX_LINK_TTL) and MAX_LINK_TTL == 3600


@pytest.mark.parametrize("tamper", ["file", "exp", "aud", "sig", "secret"])
def test_any_change_to_a_link_breaks_it(tamper):
    q, _ = _link()
    file_id, secret = "f", "secret"
    if tamper == "file":
        file_id = "g"
    elif tamper == "exp":
        q["exp"] = str(int(q["exp"]) + 3600)
    elif tamper == "aud":
        q["aud"] = "account:acct-2"
    elif tamper == "sig":
        q["sig"] = ("0" if q["sig"][0] != "0" else "1") + q["sig"][1:]
    else:
        secret = "other"
    with pytest.raises(LinkError):
        verify_link(secret, file_id, q["exp"], q["aud"], q["sig"])


def test_expired_link_is_refused():
    q, _ = _link(ttl=60, now=time.time() - 120)
    with pytest.raises(LinkError, match="expired"):
        verify_link("secret", "f", q["exp"], q["aud"], q["sig"])


def test_link_audience_binds_consumer_or_account():
    assert audience_of("acct-1", "consumer", "cons-1") == "consumer/acct-1/cons-1"
    assert audience_of("acct-1", "agent", "agent-1") == "account/acct-1"
    # Ids may contain ":" (check_id allows it): the parts still come back whole.
    assert parse_audience(audience_of("org:eu:1", "consumer", "user:42")) == ("consumer", "org:eu:1", "user:42")
    assert parse_audience(audience_of("org:eu:1", "admin", "x")) == ("account", "org:eu:1", "")
    for malformed in ("", "account/", "consumer/acct-1", "robot/acct-1", "account/acct-1/extra"):
        with pytest.raises(LinkError):
            parse_audience(malformed)
