"""Helpers every pipeline stage uses: carry the file's fields forward, reject, poison records."""
from __future__ import annotations

import json
import logging

from aiokafka import ConsumerRecord

from shared import events as ev
from shared.kafka import Outgoing
from shared.topics import FILE_REJECTED

log = logging.getLogger(__name__)

_CARRIED = tuple(n for n in ev.FileEvent.model_fields if n not in ev.Event.model_fields)


def carry(event: ev.FileEvent) -> dict:
    """The fields of the file that every later event repeats (ids, sender, caption, source)."""
    return {name: getattr(event, name) for name in _CARRIED}


def reject(event: ev.FileEvent, stage: str, reason: str, detail: str = "") -> Outgoing:
    log.info("rejected at %s: %s %s", stage, reason, detail, extra={"ctx": {"file_id": event.file_id,
                                                                          "conversation_id": event.conversation_id}})
    return Outgoing(FILE_REJECTED, event.conversation_id,
                    ev.FileRejected(**carry(event), stage=stage, reason=reason, detail=detail[:500]))


def poison_to_rejection(stage: str):
    """A record the stage cannot handle becomes file.rejected (processing_failed) when it
    names a file; one without usable ids is logged and skipped. Never a stuck partition."""

    def on_poison(record: ConsumerRecord, exc: BaseException) -> list[Outgoing]:
        try:
            data = json.loads(record.value)
            rejected = ev.FileRejected(
                file_id=data["file_id"], account_id=data["account_id"], conversation_id=data["conversation_id"],
                consumer_id=data["consumer_id"], sender=data.get("sender") or {"id": "unknown", "role": "bot"},
                caption=data.get("caption"), source=data.get("source") or "local", request_id=data.get("request_id"),
                stage=stage, reason="processing_failed", detail=f"{type(exc).__name__}: {exc}"[:500])
        except Exception:
            log.error("%s: skipping unusable record %s[%d]@%d (%s)", stage, record.topic, record.partition,
                      record.offset, type(exc).__name__)
            return []
        return [Outgoing(FILE_REJECTED, rejected.conversation_id, rejected)]

    return on_poison


def parse_file_event(record: ConsumerRecord, model: type[ev.FileEvent]) -> ev.FileEvent:
    return model.model_validate_json(record.value)
