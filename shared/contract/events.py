"""Pydantic models for every topic of the contract.

Events are small immutable models that cross the wire as JSON: `Event.to_bytes` writes them, and
every topic value is validated at the edge when it is read (`parse_event` for any event, a model's
`model_validate_json` through `shared.contract.inputs.parse_input` for records from outside). The ids of
the input events (conversation.events, gdpr.forget, file.share.requested,
account.settings) have the contract's shape (shared.contract.ids.Id): pipeline events
carry ids that were checked when they entered.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, cast, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, field_validator

from shared.contract.ids import Id

SCHEMA_VERSION = 1
# Pipeline events whose caption travels sealed (contract v2): file.uploaded, file.sanitized, file.resized.
SEALED_CAPTION_SCHEMA_VERSION = 2

# The roles of a token (claim `role`); the sending roles each have a permission profile in the settings.
Role = Literal["agent", "agent_manager", "bot", "consumer", "admin", "platform"]
SenderRole = Literal["agent", "agent_manager", "bot"]
Permission = Literal["send_files_local", "send_files_widget"]
# What a sender names in an upload form; a consumer's upload is `consumer`, implied by the token.
FormSource = Literal["local", "widget"]
Source = Literal["local", "widget", "consumer"]
DeletionReason = Literal["expired", "gdpr"]
ROLES: tuple[str, ...] = get_args(Role)
PROFILES: tuple[str, ...] = get_args(SenderRole)
SOURCES: tuple[str, ...] = get_args(FormSource)
Stage = Literal["upload", "sanitizer", "resizer", "delivery", "retention"]
RejectionReason = Literal[
    "unsupported_type",
    "file_too_large",
    "malware_detected",
    "corrupt_image",
    "image_too_large",
    "conversation_closed",
    "consumer_forgotten",
    "processing_failed",
    # A bot record on file.share.requested is refused for the same reasons as an HTTP upload.
    "unauthenticated",
    "feature_disabled",
    "file_sharing_disabled",
    "permission_denied",
    "conversation_not_found",
    "channel_not_supported",
    "invalid_request",
    "rate_limited",  # a bot record over an upload rate limit
]


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """Outside producers may send a timestamp without an offset: read it as UTC (the contract's
    zone), so every time we compare is aware and `aware - naive` can never fail in a handler."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


UtcDatetime = Annotated[datetime, AfterValidator(as_utc)]


def new_id() -> str:
    return str(uuid.uuid4())


class Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    event_id: str = Field(default_factory=new_id)
    event_type: str
    occurred_at: UtcDatetime = Field(default_factory=utcnow)
    schema_version: int = SCHEMA_VERSION

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()


class Sender(BaseModel):
    model_config = ConfigDict(frozen=True)
    id: str
    role: Role


class _FileFields(BaseModel):
    """The file's fields that every pipeline event, and the message, carry."""

    file_id: str
    account_id: str
    conversation_id: str
    consumer_id: str
    sender: Sender
    source: Source = "local"


class FileEvent(Event, _FileFields):
    """A pipeline event: file.uploaded, file.sanitized, file.resized, file.rejected."""

    request_id: str | None = None  # set when a bot sent the file over file.share.requested
    # The caption, AES-256-GCM under the consumer's key with associated data `{file_id}#caption`
    # (shared.pipeline.seal_for_file with caption_binding), base64: no plaintext caption on internal
    # topics, and a forget shreds it with the key. Absent without a caption, and always on file.rejected.
    caption_sealed: str | None = None


class _SealedCaptionEvent(FileEvent):
    schema_version: int = SEALED_CAPTION_SCHEMA_VERSION


class FileUploaded(_SealedCaptionEvent):
    event_type: Literal["file.uploaded"] = "file.uploaded"
    object_key: str
    content_type: str
    size_bytes: int


class FileSanitized(_SealedCaptionEvent):
    event_type: Literal["file.sanitized"] = "file.sanitized"
    object_key: str
    content_type: str
    size_bytes: int
    width: int
    height: int
    uploaded_at: UtcDatetime | None = None  # carried for the upload→publish latency metric


class FileResized(_SealedCaptionEvent):
    event_type: Literal["file.resized"] = "file.resized"
    object_key: str
    content_type: str
    size_bytes: int
    width: int
    height: int
    # The ≤ 30 KB JPEG preview, encrypted under the file's consumer key (shared.pipeline.seal_for_file,
    # bound to companion_of), base64: no plaintext image bytes on this topic, and a forget shreds it.
    preview_sealed: str = ""
    uploaded_at: UtcDatetime | None = None


class FileRejected(FileEvent):
    event_type: Literal["file.rejected"] = "file.rejected"
    stage: Stage
    reason: RejectionReason
    detail: str = ""


class HostedFileContent(BaseModel):
    model_config = ConfigDict(frozen=True)
    type: Literal["hosted_file"] = "hosted_file"
    content_type: str
    width: int
    height: int
    size_bytes: int
    caption: str | None = None
    download_path: str
    preview: str = ""


class MessagePublished(Event, _FileFields):
    event_type: Literal["message.published"] = "message.published"
    message_id: str
    caption: str | None = None  # the message to the platform is the one place a caption is plain
    content: HostedFileContent


class FileDeleted(Event):
    event_type: Literal["file.deleted"] = "file.deleted"
    file_id: str
    account_id: str
    conversation_id: str
    consumer_id: str
    reason: DeletionReason
    request_id: str | None = None


class ConversationEvent(Event):
    event_type: Literal["conversation.opened", "conversation.closed", "conversation.resumed"]
    account_id: Id
    conversation_id: Id
    consumer_id: Id
    # No default channel: an event that names none must not make a conversation file-capable.
    # None keeps the channel already known (a close or resume often repeats only the ids).
    channel: str | None = None
    authenticated: bool = False


class FileShareRequested(Event):
    event_type: Literal["file.share.requested"] = "file.share.requested"
    request_id: Id
    token: str
    account_id: Id
    conversation_id: Id
    filename: str = ""
    caption: str | None = None
    content_b64: str


class GdprForget(Event):
    event_type: Literal["gdpr.forget"] = "gdpr.forget"
    request_id: Id
    account_id: Id
    consumer_id: Id


def _no_permissions() -> dict[SenderRole, list[Permission]]:
    return {p: [] for p in get_args(SenderRole)}


# The types an account may accept in its settings document: photos, the phone formats that
# are converted to JPEG or PNG, and documents.
PHOTO_TYPES = ("image/jpeg", "image/png", "image/gif")
AcceptedType = Literal[
    "image/jpeg",
    "image/png",
    "image/gif",
    "image/heic",
    "image/webp",
    "application/pdf",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
]
ACCEPTABLE_TYPES: tuple[str, ...] = get_args(AcceptedType)


class _AccountSettingsFields(BaseModel):
    feature_enabled: bool = False
    file_sharing_enabled: bool = False
    permissions: dict[SenderRole, list[Permission]] = Field(default_factory=_no_permissions)
    max_image_dimension: int = Field(default=800, ge=100, le=4096)
    retention: str = "P13M"
    # Version 3; a stored document without it means the photo types of versions 1 and 2.
    accepted_types: list[AcceptedType] = Field(
        default_factory=lambda: list(cast(tuple[AcceptedType, ...], PHOTO_TYPES))
    )
    # Version 3: the conversation's consumer may send files too (off unless the account turns it on).
    consumer_uploads_enabled: bool = False

    @field_validator("accepted_types")
    @classmethod
    def _each_type_once(cls, types: list[str]) -> list[str]:
        return list(dict.fromkeys(types))  # a set in meaning, kept in the order given


class AccountSettingsDocument(_AccountSettingsFields):
    """The settings document of PUT/GET /v1/accounts/{acct}/settings."""

    model_config = ConfigDict(extra="forbid")


class AccountSettings(Event, _AccountSettingsFields):
    """Value of the compacted account.settings topic: the document + account_id."""

    event_type: Literal["account.settings"] = "account.settings"
    account_id: Id

    def document(self) -> AccountSettingsDocument:
        return AccountSettingsDocument.model_validate(self.model_dump(include=set(_AccountSettingsFields.model_fields)))


AnyEvent = Annotated[
    FileUploaded
    | FileSanitized
    | FileResized
    | FileRejected
    | MessagePublished
    | FileDeleted
    | ConversationEvent
    | FileShareRequested
    | GdprForget
    | AccountSettings,
    Field(discriminator="event_type"),
]
_any_event = TypeAdapter(AnyEvent)


def parse_event(raw: bytes | str | dict) -> Event:
    """Validate any contract event from its JSON; raises pydantic.ValidationError or ValueError."""
    if isinstance(raw, (bytes, str)):
        raw = json.loads(raw)
    return _any_event.validate_python(raw)


def json_schemas() -> dict[str, Any]:
    """JSON Schema of every event model, by event model name (for external producers)."""
    models: list[type[BaseModel]] = [
        FileUploaded,
        FileSanitized,
        FileResized,
        FileRejected,
        MessagePublished,
        FileDeleted,
        ConversationEvent,
        FileShareRequested,
        GdprForget,
        AccountSettings,
    ]
    return {m.__name__: m.model_json_schema() for m in models}
