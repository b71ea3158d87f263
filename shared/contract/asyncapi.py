"""The topics and their events as an AsyncAPI 3.0 document, built from the pydantic event models and
the topic configs, so docs/reference/asyncapi.yaml is the code's own description (a test fails when
the committed file drifts from it)."""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from shared.contract import events as ev
from shared.contract import topics as t

KAFKA_BINDING = "0.5.0"
SCHEMA_REF = "#/components/schemas/{model}"

# topic: (the record key, the event models its values are, what it is for)
CHANNELS: dict[str, tuple[str, list[type[BaseModel]], str]] = {
    t.CONVERSATION_EVENTS: (
        "conversation_id",
        [ev.ConversationEvent],
        "Input from the messaging platform: a conversation opened, closed or resumed, with its consumer and channel.",
    ),
    t.ACCOUNT_SETTINGS: (
        "account_id",
        [ev.AccountSettings],
        "Compacted: an account's settings document. The upload service publishes every change "
        "and publishes every account's settings again when the topic is empty.",
    ),
    t.FILE_SHARE_REQUESTED: (
        "conversation_id",
        [ev.FileShareRequested],
        "Input from bots: a file to send (base64, at most 5 MB decoded) with the bot's token. "
        "The outcome is a file.uploaded or a file.rejected carrying the request_id. "
        "Kept 1 hour: it carries file bytes.",
    ),
    t.FILE_UPLOADED: (
        "conversation_id",
        [ev.FileUploaded],
        "A file accepted and stored encrypted (its original). Emitted again by the re-drive "
        "while the file is unfinished.",
    ),
    t.FILE_SANITIZED: (
        "conversation_id",
        [ev.FileSanitized],
        "A file scanned and disarmed (re-encoded from pixels): its sanitized blob.",
    ),
    t.FILE_RESIZED: (
        "conversation_id",
        [ev.FileResized],
        "A file resized to the account's max_image_dimension, with its sealed preview.",
    ),
    t.FILE_REJECTED: (
        "conversation_id",
        [ev.FileRejected],
        "A file refused at a stage, with the reason (the contract's rejection code).",
    ),
    t.MESSAGE_PUBLISHED: (
        "conversation_id",
        [ev.MessagePublished],
        "The message to the platform: at most one message_id per file; the same message may "
        "come again after a broker lost its log, so deduplicate by message_id.",
    ),
    t.GDPR_FORGET: (
        "consumer_id",
        [ev.GdprForget],
        "Input from the GDPR system: forget a consumer (keys destroyed first, then every file).",
    ),
    t.FILE_DELETED: (
        "conversation_id",
        [ev.FileDeleted],
        "One receipt per deleted file (expired, or erased by a forget).",
    ),
}

# who sends and who receives each topic: the services, and the systems around them (the services'
# receivers are checked against the topics their processors consume, tests/unit/test_reference_drift.py)
SENDS = {
    "platform": [t.CONVERSATION_EVENTS],
    "bots": [t.FILE_SHARE_REQUESTED],
    "gdpr": [t.GDPR_FORGET],
    "upload": [t.ACCOUNT_SETTINGS, t.FILE_UPLOADED, t.FILE_SANITIZED, t.FILE_RESIZED, t.FILE_REJECTED],
    "sanitizer": [t.FILE_SANITIZED, t.FILE_REJECTED],
    "resizer": [t.FILE_RESIZED, t.FILE_REJECTED],
    "delivery": [t.MESSAGE_PUBLISHED, t.FILE_REJECTED],
    "retention": [t.FILE_DELETED],
}
RECEIVES = {
    "upload": [t.FILE_SHARE_REQUESTED, t.CONVERSATION_EVENTS, *t.FILE_TOPICS],
    "sanitizer": [t.FILE_UPLOADED, t.ACCOUNT_SETTINGS],
    "resizer": [t.FILE_SANITIZED, t.ACCOUNT_SETTINGS],
    "delivery": [t.FILE_RESIZED, t.CONVERSATION_EVENTS, t.FILE_DELETED],
    "retention": [
        t.GDPR_FORGET,
        t.FILE_REJECTED,
        t.FILE_UPLOADED,
        t.FILE_SANITIZED,
        t.FILE_RESIZED,
        t.ACCOUNT_SETTINGS,
    ],
    "platform": [t.MESSAGE_PUBLISHED],
    "gdpr": [t.FILE_DELETED],
}


def channel_id(topic: str) -> str:
    head, *rest = topic.split(".")
    return head + "".join(word.capitalize() for word in rest)


def topic_binding(config: dict[str, str]) -> dict[str, Any]:
    numbers = {key: int(value) for key, value in config.items() if key != "cleanup.policy"}
    policy = {"cleanup.policy": config["cleanup.policy"].split(",")} if "cleanup.policy" in config else {}
    return {"kafka": {"topicConfiguration": {**policy, **numbers}, "bindingVersion": KAFKA_BINDING}}


def channels() -> dict[str, Any]:
    configs = t.topic_configs(retention_hours=168)  # FS_TOPIC_RETENTION_HOURS' default
    return {
        channel_id(topic): {
            "address": topic,
            "description": about,
            "messages": {m.__name__: {"$ref": f"#/components/messages/{m.__name__}"} for m in models},
            "bindings": topic_binding(configs[topic]),
        }
        for topic, (_key, models, about) in CHANNELS.items()
    }


# Kafka record headers (not the JSON payload): the trace context, docs/tracing.md.
TRACE_HEADERS = {
    "type": "object",
    "description": "Optional Kafka record headers: the W3C trace context of the span that made the event (a "
    "producer may send its own on file.share.requested and gdpr.forget; the services continue it).",
    "properties": {
        "traceparent": {"type": "string", "description": "W3C traceparent, e.g. 00-<32 hex>-<16 hex>-01"},
        "tracestate": {"type": "string", "description": "W3C tracestate"},
    },
}


def messages() -> dict[str, Any]:
    found = {}
    for topic, (key, models, _about) in CHANNELS.items():
        for model in models:
            found[model.__name__] = {
                "name": model.__name__,
                "title": topic,
                "contentType": "application/json",
                "summary": (model.__doc__ or "").strip().split("\n")[0] or f"A record on {topic}.",
                "headers": copy.deepcopy(TRACE_HEADERS),  # a copy: no YAML alias in the document
                "payload": {"$ref": SCHEMA_REF.format(model=model.__name__)},
                "bindings": {
                    "kafka": {"key": {"type": "string", "description": f"the {key}"}, "bindingVersion": KAFKA_BINDING}
                },
            }
    return found


def operations() -> dict[str, Any]:
    found = {}
    for action, table in (("send", SENDS), ("receive", RECEIVES)):
        for actor, topics in table.items():
            for topic in topics:
                channel = channel_id(topic)
                found[f"{actor}_{action}s_{channel}"] = {
                    "action": action,
                    "channel": {"$ref": f"#/channels/{channel}"},
                    "summary": f"{actor}: {action} {topic}",
                    "messages": [{"$ref": f"#/channels/{channel}/messages/{m.__name__}"} for m in CHANNELS[topic][1]],
                }
    return found


def schemas() -> dict[str, Any]:
    models = [model for _key, ms, _about in CHANNELS.values() for model in ms]
    _, top = models_json_schema([(model, "validation") for model in models], ref_template=SCHEMA_REF)
    return top["$defs"]


def asyncapi_document() -> dict[str, Any]:
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "fileshare topics and events",
            "version": "3",
            "description": "Every Kafka topic of fileshare, its record key and its JSON events. Every "
            "event has event_id, event_type, occurred_at (RFC 3339 UTC) and schema_version. "
            "Generated from the pydantic event models: "
            "`fileshare schemas --write docs/reference`.",
        },
        "defaultContentType": "application/json",
        "channels": channels(),
        "operations": operations(),
        "components": {"messages": messages(), "schemas": schemas()},
    }
