"""Bearer tokens (JWT HS256 signed with FS_AUTH_SECRET) and who the caller is."""

from __future__ import annotations

import time
from dataclasses import dataclass

import jwt

from shared.contract.events import ROLES, Role
from shared.contract.ids import InvalidId, check_id


class AuthError(Exception):
    """No valid credentials: HTTP 401 unauthenticated."""


@dataclass(frozen=True)
class Principal:
    sub: str
    account_id: str
    role: Role


def mint_token(secret: str, account_id: str, role: str, sub: str, ttl_seconds: int = 3600) -> str:
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}")
    check_id(account_id, "account"), check_id(sub, "sub")
    now = int(time.time())
    return jwt.encode(
        {"sub": sub, "acct": account_id, "role": role, "iat": now, "exp": now + ttl_seconds}, secret, algorithm="HS256"
    )


# A service's own credential for the internal routes (delivery's publication lookup): its audience
# keeps it apart from user tokens both ways (a user token has no audience, this one has no account).
INTERNAL_AUDIENCE = "fileshare-internal"
SERVICES = ("upload", "sanitizer", "resizer", "delivery", "retention")


def mint_service_token(secret: str, service: str, ttl_seconds: int = 60) -> str:
    if service not in SERVICES:
        raise ValueError(f"service must be one of {SERVICES}")
    now = int(time.time())
    return jwt.encode(
        {"sub": service, "aud": INTERNAL_AUDIENCE, "iat": now, "exp": now + ttl_seconds}, secret, algorithm="HS256"
    )


def verify_service_token(secret: str, token: str) -> str:
    """The calling service's name, or AuthError."""
    if not secret:
        raise AuthError("server has no FS_AUTH_SECRET")
    try:
        claims = jwt.decode(
            token, secret, algorithms=["HS256"], audience=INTERNAL_AUDIENCE, options={"require": ["exp", "sub", "aud"]}
        )
    except jwt.PyJWTError as e:
        raise AuthError(f"not a service token: {e}") from e
    if claims["sub"] not in SERVICES:
        raise AuthError(f"unknown service {claims['sub']!r}")
    return claims["sub"]


def verify_token(secret: str, token: str) -> Principal:
    if not secret:
        raise AuthError("server has no FS_AUTH_SECRET")
    try:
        claims = jwt.decode(token, secret, algorithms=["HS256"], options={"require": ["exp", "sub", "acct", "role"]})
    except jwt.ExpiredSignatureError as e:
        raise AuthError("token expired") from e
    except jwt.PyJWTError as e:
        raise AuthError(f"invalid token: {e}") from e
    if claims["role"] not in ROLES:
        raise AuthError(f"unknown role {claims['role']!r}")
    try:  # the claims become ids in paths, rows and logs: the contract's shape, or no token at all
        return Principal(
            sub=check_id(claims["sub"], "sub"), account_id=check_id(claims["acct"], "acct"), role=claims["role"]
        )
    except InvalidId as e:
        raise AuthError(f"invalid token: {e}") from None


def bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise AuthError("missing Authorization header")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("Authorization must be 'Bearer <token>'")
    return token.strip()
