"""The one id rule, and every door that uses it: event models, token claims,
signed link audiences, object keys, the command line, the log line of a dropped record."""

from __future__ import annotations

import json
import logging
import uuid

import jwt
import pytest
from aiokafka import ConsumerRecord
from pydantic import ValidationError

from services.cli import main as cli
from shared.adapters.storage import ObjectKey
from shared.contract import events as ev
from shared.contract.auth import AuthError, mint_token, verify_token
from shared.contract.ids import FileId, check_file_id, check_id, is_valid_id, shown
from shared.contract.inputs import parse_input
from shared.contract.links import LinkError, parse_audience
from shared.runtime.metrics import ServiceMetrics

SECRET = "unit-test-secret-unit-test-secret"
GOOD = ["a", "acct-1", "conv_2.x", "user@example.com", "a:b", "a..b", "A" * 128, "7"]
HOSTILE = {
    "NUL": "nul\x00x",
    "newline": "x\ny",
    "trailing newline": "conv\n",
    "10 kB": "a" * 10240,
    "129 chars": "a" * 129,
    "RTL override": "abc\u202egpj.exe",
    "..": "..",
    ".": ".",
    "slash": "a/b",
    "encoded slash": "a%2Fb",
    "backslash": "a\\b",
    "leading dot": ".hidden",
    "leading dash": "-x",
    "space": "a b",
    "empty": "",
    "non-ASCII": "é",
    "not a string": 7,
    "none": None,
}


@pytest.mark.parametrize("value", GOOD)
def test_ids_of_the_contracts_shape_pass_unchanged(value):
    assert is_valid_id(value) and check_id(value) == value


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_ids_are_refused_with_the_value_escaped(name):
    value = HOSTILE[name]
    assert not is_valid_id(value)
    with pytest.raises(ValueError) as refused:
        check_id(value, "account_id")
    message = str(refused.value)
    assert message.startswith("account_id must be") and message.isascii() and "\n" not in message
    assert len(message) < 250  # a 10 kB id is cut, never echoed whole


def test_a_file_id_is_a_uuid():
    file_id = str(uuid.uuid4())
    assert check_file_id(file_id) == file_id and check_file_id(file_id.upper())
    for value in ("f-1", file_id + "\n", file_id[:-1], "..", f"{{{file_id}}}", file_id.replace("-", "")):
        with pytest.raises(ValueError):
            check_file_id(value)


def test_shown_is_one_printable_ascii_token():
    assert shown("x\ny\u202e\x00") == "'x\\ny\\u202e\\x00'"
    assert shown("a" * 10240).endswith("... (10240 chars)") and len(shown("a" * 10240)) < 100


@pytest.mark.parametrize(
    "model, fields",
    [
        (
            ev.ConversationEvent,
            {"event_type": "conversation.opened", "account_id": "a", "conversation_id": "c", "consumer_id": "u"},
        ),
        (ev.GdprForget, {"request_id": "r", "account_id": "a", "consumer_id": "u"}),
        (
            ev.FileShareRequested,
            {"request_id": "r", "token": "t", "account_id": "a", "conversation_id": "c", "content_b64": ""},
        ),
        (ev.AccountSettings, {"account_id": "a"}),
    ],
)
def test_every_id_of_an_input_event_follows_the_rule(model, fields):
    model.model_validate(fields)
    ids = [name for name in fields if name.endswith("_id")]
    for name in ids:
        for value in HOSTILE.values():
            with pytest.raises(ValidationError):
                model.model_validate({**fields, name: value})
    schema = model.model_json_schema()["properties"]
    assert all(schema[name]["pattern"] == "^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$" for name in ids)


def test_the_pydantic_file_id_type_is_the_same_rule():
    from pydantic import TypeAdapter

    adapter = TypeAdapter(FileId)
    assert adapter.validate_python(str(uuid.UUID(int=1))) == str(uuid.UUID(int=1))
    with pytest.raises(ValidationError):
        adapter.validate_python("..")


@pytest.mark.parametrize("claim", ["sub", "acct"])
def test_a_token_whose_claims_hold_a_hostile_id_is_no_token(claim):
    for value in (v for v in HOSTILE.values() if isinstance(v, str)):
        claims = {"sub": "agent-1", "acct": "acct-1", "role": "agent", "exp": 2**31, claim: value}
        with pytest.raises(AuthError):
            verify_token(SECRET, jwt.encode(claims, SECRET, algorithm="HS256"))
    with pytest.raises(ValueError):  # and none is minted
        mint_token(SECRET, "x\ny", "agent", "agent-1")


def test_a_signed_link_audience_names_ids_of_the_rule():
    assert parse_audience("consumer/acct-1/u-1") == ("consumer", "acct-1", "u-1")
    for audience in ("account/x\ny", "consumer/acct-1/..", "account/.", "consumer/a/b\u202ec"):
        with pytest.raises(LinkError):
            parse_audience(audience)


def test_object_keys_use_the_same_rule():
    assert str(ObjectKey("a..b", "u", "c", "f", "final")) == "a..b/u/c/f/final"
    for value in HOSTILE.values():
        with pytest.raises(ValueError):
            ObjectKey("acct", value, "conv", "file", "final")


@pytest.mark.parametrize(
    "args",
    [
        ["token", "--account", "x\ny", "--role", "agent", "--sub", "a"],
        ["token", "--account", "a", "--role", "agent", "--sub", "a" * 10240],
        ["open", "agent", "--account", "a", "--conversation", ".."],
        ["open", "consumer", "--account", "a", "--conversation", "c", "--sub", "abc\u202e"],
        ["forget", "--account", "a", "--consumer", "."],
        ["forget", "--account", "a", "--consumer", "u", "--request-id", "r\x00"],
        ["conversation", "opened", "--account", "a", "--conversation", "a/b", "--consumer", "u"],
    ],
)
def test_the_command_line_refuses_hostile_ids_with_the_rule(args, capsys):
    with pytest.raises(SystemExit) as exited:
        cli(args)
    assert exited.value.code == 2
    assert "must be 1 to 128 characters of A-Z a-z 0-9" in capsys.readouterr().err


def test_an_invalid_input_record_is_dropped_counted_and_logged_on_one_escaped_line(caplog):
    metrics = ServiceMetrics("test")

    def record(value: dict) -> ConsumerRecord:
        return ConsumerRecord("gdpr.forget", 0, 7, 0, 0, b"u", json.dumps(value).encode(), None, 1, 1, [])

    with caplog.at_level(logging.WARNING):
        assert (
            parse_input(
                record(
                    {
                        "event_type": "gdpr.forget",
                        "request_id": "r\nFORGED line",
                        "account_id": "a",
                        "consumer_id": "u\u202e",
                    }
                ),
                ev.GdprForget.model_validate_json,
                metrics,
                "retention",
            )
            is None
        )
    assert metrics.invalid_events.labels("gdpr.forget")._value.get() == 1
    (line,) = [r.getMessage() for r in caplog.records if "dropping" in r.getMessage()]
    assert line.isascii() and "\n" not in line and "gdpr.forget" in line and "request_id" in line
    good = {"event_type": "gdpr.forget", "request_id": "r", "account_id": "a", "consumer_id": "u"}
    assert parse_input(record(good), ev.GdprForget.model_validate_json, metrics).request_id == "r"


def test_a_bot_record_is_answered_only_when_its_request_id_is_an_id():
    from services.upload.bots import UNKNOWN, RecordIds, record_ids

    assert record_ids({"request_id": "r", "account_id": "a", "conversation_id": "c"}) == RecordIds("r", "a", "c")
    for value in HOSTILE.values():
        assert record_ids({"request_id": value, "account_id": "a", "conversation_id": "c"}) is None
        ids = record_ids({"request_id": "r", "account_id": value, "conversation_id": "c"})
        assert (ids.account_id, ids.conversation_id) == (UNKNOWN, "c") and ids.invalid.startswith("account_id must")
    assert record_ids(["not", "an", "object"]) is None
    assert record_ids({"request_id": "r"}).invalid.count("must be") == 2
