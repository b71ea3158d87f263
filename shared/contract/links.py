"""Signed download links: HMAC over file id, expiry and audience, usable without headers."""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import urlencode

from shared.contract.ids import is_valid_id

MAX_LINK_TTL = 3600


class LinkError(Exception):
    pass


def _link_key(secret: str) -> bytes:
    # A key of its own, so a link signature can never be confused with a token signature.
    return hmac.new(secret.encode(), b"fileshare signed download link v1", hashlib.sha256).digest()


def _signature(secret: str, file_id: str, expires: int, audience: str) -> str:
    msg = f"{file_id}\n{expires}\n{audience}".encode()
    return hmac.new(_link_key(secret), msg, hashlib.sha256).hexdigest()


def sign_link(secret: str, file_id: str, audience: str, ttl_seconds: int, now: float | None = None) -> tuple[str, int]:
    """Returns (query string, expires_at unix seconds)."""
    ttl = max(1, min(int(ttl_seconds), MAX_LINK_TTL))
    expires = int((now or time.time()) + ttl)
    return urlencode({"exp": expires, "aud": audience, "sig": _signature(secret, file_id, expires, audience)}), expires


def verify_link(secret: str, file_id: str, exp: str, aud: str, sig: str, now: float | None = None) -> str:
    """Returns the audience the link was made for; raises LinkError when forged or expired."""
    try:
        expires = int(exp)
    except (TypeError, ValueError):
        raise LinkError("malformed link") from None
    expected = _signature(secret, file_id, expires, aud or "")
    if not hmac.compare_digest(expected, sig or ""):
        raise LinkError("invalid link signature")
    if (now or time.time()) > expires:
        raise LinkError("link expired")
    return aud


def audience_of(account_id: str, role: str, sub: str) -> str:
    """Who a link speaks for: the conversation's consumer, or users of the account. Parts are
    joined with "/", which no id may contain (ids may contain ":")."""
    return f"consumer/{account_id}/{sub}" if role == "consumer" else f"account/{account_id}"


def parse_audience(audience: str) -> tuple[str, str, str]:
    """(kind, account_id, consumer sub or "") of audience_of(); LinkError when it is neither."""
    kind, _, rest = audience.partition("/")
    account_id, _, sub = rest.partition("/")
    if (
        not is_valid_id(account_id)
        or (kind, bool(sub)) not in (("consumer", True), ("account", False))
        or (sub and not is_valid_id(sub))
    ):
        raise LinkError("malformed link audience")
    return kind, account_id, sub
