"""A service's token for the internal routes and a user's token never stand in for each other."""

import pytest

from shared.contract.auth import AuthError, mint_service_token, mint_token, verify_service_token, verify_token

SECRET = "s" * 32


def test_a_service_token_names_its_service():
    assert verify_service_token(SECRET, mint_service_token(SECRET, "upload")) == "upload"


def test_a_user_token_is_no_service_token():
    with pytest.raises(AuthError):
        verify_service_token(SECRET, mint_token(SECRET, "acme", "platform", "team"))


def test_a_service_token_is_no_user_token():
    with pytest.raises(AuthError):
        verify_token(SECRET, mint_service_token(SECRET, "upload"))


def test_another_secret_or_an_unknown_service_is_refused():
    with pytest.raises(AuthError):
        verify_service_token(SECRET, mint_service_token("t" * 32, "upload"))
    with pytest.raises(ValueError):
        mint_service_token(SECRET, "intruder")
