"""A projection: a stream processor that folds each event of a topic into this service's tables."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiokafka import ConsumerRecord

from shared.adapters.db import Connection, Database
from shared.adapters.kafka import StreamProcessor
from shared.contract.events import Event
from shared.contract.inputs import parse_input
from shared.settings import Settings

log = logging.getLogger(__name__)
E = TypeVar("E", bound=Event)


def projection_group(service: str, what: str) -> str:
    """The consumer group of a service's projection."""
    return f"fileshare-{service}-{what}"


def projection(
    settings: Settings,
    service: str,
    what: str,
    topics: list[str],
    parse: Callable[[bytes], E],
    apply: Callable[[Connection, E], Awaitable[object]],
    db: Database,
    metrics=None,
    background: bool = False,
) -> StreamProcessor:
    """One transaction per record (`apply(conn, parse(value))`), committed before the offset. A record
    that does not parse (an id of the wrong shape, say) is dropped, logged and counted
    (shared.contract.inputs): an input from outside must never block its partition."""
    name = f"{service}-{what}"

    async def handle(record: ConsumerRecord):
        if record.value is None:
            return []  # a compaction tombstone
        event = parse_input(record, parse, metrics, name)
        if event is None:
            return []
        async with db.transaction() as conn:
            await apply(conn, event)
        return []

    def on_poison(record: ConsumerRecord, exc: BaseException):
        log.error("%s: skipping %s record @%d (%s)", name, record.topic, record.offset, type(exc).__name__)
        return []

    return StreamProcessor(
        settings,
        name,
        projection_group(service, what),
        topics,
        handle,
        on_poison,
        metrics,
        commit_per_batch=True,
        background=background,
    )
