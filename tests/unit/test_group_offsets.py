"""The settings PUT's wait for the image stages (wait_applied over GroupOffsets) against a broker that
accepts connections and never answers: the wait ends at its own timeout, not aiokafka's 40 s."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from shared.adapters.kafka import GroupOffsets
from shared.projections.account_settings import wait_applied


async def test_a_broker_that_never_answers_holds_the_wait_no_longer_than_its_timeout():
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # reads every request, answers none

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    offsets = GroupOffsets(SimpleNamespace(kafka_bootstrap=f"127.0.0.1:{port}"))
    record = SimpleNamespace(topic="account.settings", partition=0, offset=5)
    try:
        # 10 s: far below aiokafka's request timeout, so a wait that ignored its own would fail here.
        lag = await asyncio.wait_for(wait_applied(offsets, record, timeout=0.5), 10)
        assert lag.behind == ["sanitizer", "resizer"]
        assert isinstance(lag.cause, asyncio.TimeoutError)
    finally:
        await offsets.stop()
        server.close()
