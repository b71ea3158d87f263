"""The contract as the shared library exposes it: configuration, topics,
JSON Schema export, the `fileshare token` CLI and the common event fields."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from services.cli import main as fileshare
from shared.contract import events, topics
from shared.contract.auth import verify_token
from shared.settings import METRICS_PORT_OFFSETS, Settings

# --- Configuration -------------------------------------------------------------------------

# Every FS_* variable of the contract, with its documented default
# (None: documented without a default value; FS_CLAMD unset = the sanitizer refuses to start).
CONTRACT_DEFAULTS = {
    "FS_KAFKA_BOOTSTRAP": "127.0.0.1:9092",
    "FS_S3_ENDPOINT": "127.0.0.1:9000",
    "FS_S3_ACCESS_KEY": None,
    "FS_S3_SECRET_KEY": None,
    "FS_S3_SECURE": False,
    "FS_MASTER_KEY": None,
    "FS_AUTH_SECRET": None,
    "FS_CLAMD": None,
    "FS_DATA_DIR": Path(".data"),
    "FS_UPLOAD_PORT": 8080,
    "FS_DELIVERY_PORT": 8081,
    "FS_MAX_UPLOAD_BYTES": 5242880,
    "FS_MAX_DOCUMENT_PAGES": 500,
    "FS_FILE_CHANNELS": "web",
    "FS_RETENTION_SWEEP_SECONDS": 3600,
    "FS_METRICS_PORT_BASE": 9101,
    "FS_CLAMAV_DB_DIR": "/var/lib/clamav",
    "FS_DATABASE_URL": "",
    "FS_TOPIC_RETENTION_HOURS": 168,
    "FS_REDRIVE_SECONDS": 60,
}

# Example values of the right type, to prove each variable is read from the environment.
SAMPLE_VALUES = {
    "FS_KAFKA_BOOTSTRAP": ("kafka:29092", "kafka:29092"),
    "FS_S3_ENDPOINT": ("minio:9000", "minio:9000"),
    "FS_S3_ACCESS_KEY": ("access", "access"),
    "FS_S3_SECRET_KEY": ("secret", "secret"),
    "FS_S3_SECURE": ("true", True),
    "FS_MASTER_KEY": ("bWFzdGVy", "bWFzdGVy"),
    "FS_AUTH_SECRET": ("auth-secret", "auth-secret"),
    "FS_CLAMD": ("clamd:3310", "clamd:3310"),
    "FS_DATA_DIR": ("/srv/data", Path("/srv/data")),
    "FS_UPLOAD_PORT": ("18080", 18080),
    "FS_DELIVERY_PORT": ("18081", 18081),
    "FS_MAX_UPLOAD_BYTES": ("1000", 1000),
    "FS_MAX_DOCUMENT_PAGES": ("20", 20),
    "FS_FILE_CHANNELS": ("web,app", "web,app"),
    "FS_RETENTION_SWEEP_SECONDS": ("7", 7),
    "FS_METRICS_PORT_BASE": ("19000", 19000),
    "FS_CLAMAV_DB_DIR": ("/srv/clamav", "/srv/clamav"),
    "FS_DATABASE_URL": ("postgresql://u:p@db:5432/fileshare", "postgresql://u:p@db:5432/fileshare"),
    "FS_TOPIC_RETENTION_HOURS": ("24", 24),
    "FS_REDRIVE_SECONDS": ("5", 5),
}


def field_of(variable: str) -> str:
    return variable.removeprefix("FS_").lower()


@pytest.fixture
def clean_env(monkeypatch):
    """No FS_* of the developer or of the test session may leak into the settings under test."""
    import os

    for name in [k for k in os.environ if k.upper().startswith("FS_")]:
        monkeypatch.delenv(name)
    return monkeypatch


def test_settings_model_lists_every_contract_variable():
    missing = [v for v in CONTRACT_DEFAULTS if field_of(v) not in Settings.model_fields]
    assert not missing, f"settings model lacks {missing}"
    assert Settings.model_config.get("env_prefix") == "FS_"


@pytest.mark.parametrize("variable", sorted(CONTRACT_DEFAULTS))
def test_contract_default(clean_env, variable):
    expected = CONTRACT_DEFAULTS[variable]
    value = getattr(Settings(), field_of(variable))
    if expected is None:
        assert value in (None, ""), f"{variable} must be unset by default, got {value!r}"
    else:
        assert value == expected, f"{variable}: {value!r} != {expected!r}"
        if isinstance(expected, (bool, str, Path)):
            assert type(value) is type(expected), f"{variable}: {value!r} is not a {type(expected).__name__}"
        else:
            assert isinstance(value, (int, float)) and not isinstance(value, bool), variable


def test_clamd_is_unset_by_default_and_empty_is_unset(clean_env):
    assert Settings().clamd is None
    clean_env.setenv("FS_CLAMD", "")
    assert Settings().clamd is None, "an empty FS_CLAMD is the same as unset"


@pytest.mark.parametrize("variable", sorted(SAMPLE_VALUES))
def test_contract_variable_is_read_from_its_environment_name(clean_env, variable):
    raw, parsed = SAMPLE_VALUES[variable]
    clean_env.setenv(variable, raw)
    assert getattr(Settings(), field_of(variable)) == parsed


def test_metrics_ports_are_base_plus_service_offset(clean_env):
    assert METRICS_PORT_OFFSETS == {"upload": 0, "sanitizer": 1, "resizer": 2, "delivery": 3, "retention": 4}
    s = Settings()
    assert [s.metrics_port(n) for n in ("upload", "sanitizer", "resizer", "delivery", "retention")] == [
        9101,
        9102,
        9103,
        9104,
        9105,
    ]
    clean_env.setenv("FS_METRICS_PORT_BASE", "20000")
    assert Settings().metrics_port("retention") == 20004


# --- Topics ----------------------------------------------------------------------------------

CONTRACT_TOPICS = {
    "conversation.events",
    "account.settings",
    "file.share.requested",
    "file.uploaded",
    "file.sanitized",
    "file.resized",
    "file.rejected",
    "message.published",
    "gdpr.forget",
    "file.deleted",
}


TOPIC_CONFIGS = topics.topic_configs(168)


def test_every_contract_topic_is_declared():
    assert set(TOPIC_CONFIGS) == CONTRACT_TOPICS


def test_account_settings_is_compacted():
    assert TOPIC_CONFIGS["account.settings"].get("cleanup.policy") == "compact"


def test_file_share_requested_takes_8_mib_records():
    assert int(TOPIC_CONFIGS["file.share.requested"]["max.message.bytes"]) >= 8 * 1024 * 1024


def test_every_event_topic_is_transport_with_a_finite_retention():
    # State lives in the database: no topic is kept forever, inputs included.
    for name in CONTRACT_TOPICS - {"account.settings", "file.share.requested"}:
        assert topics.topic_configs(24)[name]["retention.ms"] == str(24 * 3600 * 1000), name
    assert int(TOPIC_CONFIGS["file.share.requested"]["retention.ms"]) <= 3600 * 1000  # carries file bytes


class RecordingAdmin:
    """Stands in for the Kafka admin client to see exactly what ensure_topics asks for."""

    created: list = []
    existing: list[str] = []

    def __init__(self, **kwargs):
        self.kwargs = kwargs

    async def start(self):
        pass

    async def close(self):
        pass

    async def list_topics(self):
        return list(self.existing)

    async def create_topics(self, new_topics):
        RecordingAdmin.created.extend(new_topics)


def test_ensure_topics_declares_explicit_partitions_and_configs(monkeypatch):
    monkeypatch.setattr(topics, "AIOKafkaAdminClient", RecordingAdmin)
    RecordingAdmin.created, RecordingAdmin.existing = [], ["file.uploaded"]
    asyncio.run(topics.ensure_topics("127.0.0.1:1", partitions=7))
    by_name = {t.name: t for t in RecordingAdmin.created}
    assert set(by_name) == CONTRACT_TOPICS - {"file.uploaded"}, "existing topics are kept, the rest created"
    for name, t in by_name.items():
        assert t.num_partitions == 7, f"{name} must get the explicit partition count"
        assert t.topic_configs == TOPIC_CONFIGS[name]
    assert by_name["account.settings"].topic_configs["cleanup.policy"] == "compact"


# --- JSON Schema export ------------------------------------------------------------------------


def event_types_of(schema: dict) -> set[str]:
    prop = schema["properties"]["event_type"]
    return {prop["const"]} if "const" in prop else set(prop["enum"])


# The event types each topic carries.
TOPIC_EVENT_TYPES = {t: {t} for t in CONTRACT_TOPICS} | {
    "conversation.events": {"conversation.opened", "conversation.closed", "conversation.resumed"}
}


def test_json_schemas_cover_every_topic():
    schemas = events.json_schemas()
    covered = set().union(*(event_types_of(s) for s in schemas.values()))
    for topic, types in TOPIC_EVENT_TYPES.items():
        assert types <= covered, f"no JSON Schema for {topic} ({types - covered})"
    for name, schema in schemas.items():
        assert schema["type"] == "object" and {"event_id", "event_type", "occurred_at", "schema_version"} <= set(
            schema["properties"]
        ), name


def test_fileshare_schemas_prints_every_schema(capsys):
    assert fileshare(["schemas"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(json.dumps(events.json_schemas()))


# --- fileshare token ---------------------------------------------------------------------------


def test_fileshare_token_mints_a_verifiable_token(clean_env, capsys):
    clean_env.setenv("FS_AUTH_SECRET", "dev-secret-for-tests-0123456789abcdef")
    assert fileshare(["token", "--account", "A", "--role", "agent", "--sub", "agent-1"]) == 0
    token = capsys.readouterr().out.strip()
    principal = verify_token("dev-secret-for-tests-0123456789abcdef", token)
    assert (principal.account_id, principal.role, principal.sub) == ("A", "agent", "agent-1")
    from shared.contract.auth import AuthError

    with pytest.raises(AuthError):
        verify_token("another-secret-0123456789abcdef0123", token)


def test_fileshare_token_rejects_an_unknown_role_clearly(clean_env, capsys):
    clean_env.setenv("FS_AUTH_SECRET", "dev-secret-for-tests-0123456789abcdef")
    with pytest.raises(SystemExit) as exit_info:
        fileshare(["token", "--account", "A", "--role", "superuser", "--sub", "agent-1"])
    assert exit_info.value.code != 0
    captured = capsys.readouterr()
    assert captured.out == "", "no token on an invalid role"
    assert "--role" in captured.err and "superuser" in captured.err and "agent" in captured.err


# --- Event models --------------------------------------------------------------------------------

SENDER = {"id": "agent-1", "role": "agent"}
FILE = dict(file_id="f-1", account_id="a-1", conversation_id="c-1", consumer_id="u-1", sender=SENDER, source="widget")
SEALED = dict(caption_sealed="RlNCAQ==")  # what travels instead of the caption (contract v2)
STAGE = dict(object_key="a-1/u-1/c-1/f-1/original", content_type="image/jpeg", size_bytes=10)

PIPELINE_EVENTS = [
    events.FileUploaded(**FILE, **SEALED, **STAGE),
    events.FileSanitized(**FILE, **SEALED, **STAGE, width=3, height=2),
    events.FileResized(**FILE, **SEALED, **STAGE, width=3, height=2),
    events.FileRejected(**FILE, stage="sanitizer", reason="corrupt_image", detail="bad"),
]
SEALED_CAPTION_EVENTS = ("file.uploaded", "file.sanitized", "file.resized")
OTHER_EVENTS = [
    events.MessagePublished(
        **FILE,
        caption="hello",
        message_id="m-1",
        content=events.HostedFileContent(
            content_type="image/jpeg",
            width=3,
            height=2,
            size_bytes=10,
            caption="hello",
            download_path="/v1/files/f-1/content",
        ),
    ),
    events.FileDeleted(file_id="f-1", account_id="a-1", conversation_id="c-1", consumer_id="u-1", reason="expired"),
    events.ConversationEvent(
        event_type="conversation.opened", account_id="a-1", conversation_id="c-1", consumer_id="u-1"
    ),
    events.FileShareRequested(request_id="r-1", token="t", account_id="a-1", conversation_id="c-1", content_b64=""),
    events.GdprForget(request_id="r-1", account_id="a-1", consumer_id="u-1"),
    events.AccountSettings(account_id="a-1"),
]
RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|\+00:00)$")


def test_every_topic_has_an_event_model_here():
    types = set().union(*(event_types_of(e.model_json_schema()) for e in PIPELINE_EVENTS + OTHER_EVENTS))
    assert set().union(*TOPIC_EVENT_TYPES.values()) - types <= {"conversation.closed", "conversation.resumed"}


@pytest.mark.parametrize("event", PIPELINE_EVENTS + OTHER_EVENTS, ids=lambda e: e.event_type)
def test_every_event_has_the_common_fields(event):
    # A fresh copy: the parametrized instances were built at collection, maybe minutes ago.
    before = datetime.now(UTC)
    event = type(event)(**event.model_dump(exclude={"event_id", "occurred_at"}))
    after = datetime.now(UTC)
    wire = json.loads(event.to_bytes())
    assert uuid.UUID(wire["event_id"]).version == 4 and str(uuid.UUID(wire["event_id"])) == wire["event_id"]
    assert wire["event_type"] == event.event_type
    assert RFC3339_UTC.match(wire["occurred_at"]), wire["occurred_at"]
    occurred = datetime.fromisoformat(wire["occurred_at"].replace("Z", "+00:00"))
    assert occurred.utcoffset() == timedelta(0)
    assert before - timedelta(milliseconds=1) <= occurred <= after  # stamped at creation (to the ms)
    assert wire["schema_version"] == (2 if event.event_type in SEALED_CAPTION_EVENTS else 1)
    # What goes on the wire parses back to the same event.
    assert events.parse_event(event.to_bytes()) == event


def test_every_event_gets_its_own_id():
    a = events.GdprForget(request_id="r", account_id="a", consumer_id="u")
    b = events.GdprForget(request_id="r", account_id="a", consumer_id="u")
    assert a.event_id != b.event_id


@pytest.mark.parametrize("event", PIPELINE_EVENTS, ids=lambda e: e.event_type)
def test_pipeline_events_carry_the_file_fields(event):
    wire = json.loads(event.to_bytes())
    for name in ("file_id", "account_id", "conversation_id", "consumer_id", "source"):
        assert wire[name] == FILE[name], name
    assert "caption" not in wire, "no plaintext caption on internal topics"
    if event.event_type in SEALED_CAPTION_EVENTS:
        assert wire["caption_sealed"] == SEALED["caption_sealed"]
    assert wire["sender"] == {"id": "agent-1", "role": "agent"}
    required = set(type(event).model_json_schema()["required"])
    assert {"file_id", "account_id", "conversation_id", "consumer_id", "sender"} <= required
    assert "content_b64" not in wire and not any(isinstance(v, bytes) for v in wire.values()), (
        "blobs never travel in pipeline events"
    )


@pytest.mark.parametrize("model", [type(e) for e in PIPELINE_EVENTS], ids=lambda m: m.__name__)
def test_pipeline_events_reject_a_sender_without_role(model):
    from pydantic import ValidationError

    event = next(e for e in PIPELINE_EVENTS if type(e) is model)
    wire = json.loads(event.to_bytes())
    wire["sender"] = {"id": "agent-1"}
    with pytest.raises(ValidationError):
        events.parse_event(wire)


def test_a_timestamp_without_offset_from_an_outside_producer_is_read_as_utc():
    # gdpr.forget and conversation.events come from other systems; a naive time must not make
    # `now - occurred_at` fail in a handler (that record would be retried forever).
    wire = json.dumps(
        {
            "event_id": str(uuid.uuid4()),
            "event_type": "gdpr.forget",
            "occurred_at": "2026-03-01T12:00:00",
            "schema_version": 1,
            "request_id": "r",
            "account_id": "a",
            "consumer_id": "u",
        }
    ).encode()
    event = events.parse_event(wire)
    assert event.occurred_at == datetime(2026, 3, 1, 12, tzinfo=UTC)
    assert datetime.now(UTC) - event.occurred_at > timedelta(0)
    other_zone = json.loads(wire) | {"occurred_at": "2026-03-01T14:00:00+02:00"}
    assert events.parse_event(json.dumps(other_zone).encode()).occurred_at.utcoffset() == timedelta(0)
