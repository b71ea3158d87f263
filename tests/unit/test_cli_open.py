"""`fileshare open agent|consumer`: a page address with a fresh development token in its fragment."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from services.cli import main
from shared.contract.auth import verify_token

SECRET = "s" * 48


def opened(capsys, monkeypatch, *argv: str, **env: str):
    monkeypatch.setenv("FS_AUTH_SECRET", SECRET)
    for name in ("FS_UPLOAD_PORT", "FS_DELIVERY_PORT", "FS_PUBLIC_UPLOAD_URL", "FS_PUBLIC_DELIVERY_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["open", *argv]) == 0
    url = urlsplit(capsys.readouterr().out.strip())
    return url, parse_qs(url.fragment)


def test_agent_page_with_several_conversations(capsys, monkeypatch):
    url, fragment = opened(
        capsys,
        monkeypatch,
        "agent",
        "--account",
        "acme",
        "--conversation",
        "c1",
        "--conversation",
        "c2",
        FS_UPLOAD_PORT="18080",
    )
    assert (url.scheme, url.netloc, url.path, url.query) == ("http", "127.0.0.1:18080", "/agent/", "")
    assert fragment["account"] == ["acme"] and fragment["conversation"] == ["c1", "c2"]
    principal = verify_token(SECRET, fragment["token"][0])
    assert (principal.account_id, principal.role, principal.sub) == ("acme", "agent", "agent-1")


def test_consumer_page_on_the_public_delivery_address(capsys, monkeypatch):
    url, fragment = opened(
        capsys,
        monkeypatch,
        "consumer",
        "--account",
        "acme",
        "--conversation",
        "c1",
        "--sub",
        "consumer-9",
        FS_PUBLIC_DELIVERY_URL="https://files.example/",
    )
    assert (url.scheme, url.netloc, url.path, url.query) == ("https", "files.example", "/consumer/", "")
    principal = verify_token(SECRET, fragment["token"][0])
    assert (principal.role, principal.sub) == ("consumer", "consumer-9")
