"""Records from outside (the messaging platform, the GDPR system, bots) that fail their model, an
id of the wrong shape above all: dropped, logged with the offending value escaped, and counted in
`fileshare_invalid_events_total{topic}`, so one bad record never blocks its partition and never
reaches a table, an object key or a log line as it was sent."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from aiokafka import ConsumerRecord
from pydantic import ValidationError

from shared.contract.ids import shown

log = logging.getLogger(__name__)
T = TypeVar("T")


def printable(text: str) -> str:
    """ASCII only: a bidirectional override or a line break in a message shows as its escape."""
    return text.encode("ascii", "backslashreplace").decode().replace("\n", "\\n").replace("\r", "\\r")


def why_invalid(error: Exception) -> str:
    """The first reason a record failed, with the value it failed on escaped."""
    if isinstance(error, ValidationError) and error.errors():
        first = error.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "record"
        message, got = first.get("msg", "invalid"), shown(first.get("input"))
        return printable(f"{where}: {message}" + ("" if got in message else f" (got {got})"))
    return printable(str(error).splitlines()[0] if str(error) else type(error).__name__)[:300]


def drop_invalid(record: ConsumerRecord, error: Exception | str, metrics=None, name: str = "input") -> None:
    """Log and count a record that is dropped as invalid."""
    reason = error if isinstance(error, str) else why_invalid(error)
    log.warning(
        "%s: dropping an invalid %s record [%d]@%d: %s",
        name,
        record.topic,
        record.partition,
        record.offset,
        printable(reason),
    )
    if metrics is not None:
        metrics.invalid_events.labels(record.topic).inc()


def parse_input(record: ConsumerRecord, parse: Callable[[bytes], T], metrics=None, name: str = "input") -> T | None:
    """`parse(record.value)`, or None when the record is invalid (dropped, logged and counted)."""
    try:
        return parse(record.value)
    except (ValidationError, ValueError) as e:
        drop_invalid(record, e, metrics, name)
        return None
