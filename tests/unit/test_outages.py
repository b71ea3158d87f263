"""shared.runtime.outages: a dependency outage logs one line when it starts and one when it ends."""

from __future__ import annotations

import logging

import psycopg
import pytest
from aiokafka.errors import KafkaConnectionError
from prometheus_client import CollectorRegistry, Counter

from shared.adapters.scanner import ScannerUnavailable
from shared.adapters.storage.objectstore import StorageUnavailable
from shared.runtime.outages import ClientRetryFilter, DependencyOutages, dependency_of, note_transient
from tests.support import FakeClock


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def outages(clock):
    # quiet far beyond the test: only the test's own end_quiet_outages() closes an outage
    return DependencyOutages(quiet=3600, clock=clock)


def outage_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "fileshare.outages"]


def test_an_outage_logs_its_start_and_its_end_and_counts_the_errors_between(outages, clock, caplog):
    registry = CollectorRegistry()
    counter = Counter("fileshare_dependency_errors_total", "", ["dependency"], registry=registry)
    outages.count_into(counter)

    with caplog.at_level(logging.INFO):
        for _ in range(500):
            outages.error("kafka", "Unable connect to node with id 1")
            clock.now += 0.01
        outages.end_quiet_outages()  # not quiet long enough yet
        clock.now += 3600
        outages.end_quiet_outages()

    lines = outage_lines(caplog)
    assert len(lines) == 2
    assert lines[0].startswith("kafka unavailable (Unable connect to node with id 1)")
    assert lines[1] == "kafka available again: outage of 5.0s over (500 errors)"
    assert registry.get_sample_value("fileshare_dependency_errors_total", {"dependency": "kafka"}) == 500
    assert not outages.open


def test_outages_of_two_dependencies_are_apart(outages, caplog):
    with caplog.at_level(logging.INFO):
        for dependency in ("kafka", "database", "kafka", "database"):
            outages.error(dependency, "down")
    assert [line.split()[0] for line in outage_lines(caplog)] == ["kafka", "database"]


@pytest.mark.parametrize(
    "exc, dependency",
    [
        (KafkaConnectionError("closed"), "kafka"),
        (psycopg.OperationalError("server closed the connection"), "database"),
        (StorageUnavailable("s3 down"), "s3"),
        (ScannerUnavailable("clamd down"), "clamd"),
        (ValueError("a bug"), None),
    ],
)
def test_errors_are_attributed_to_their_dependency(exc, dependency):
    assert dependency_of(exc) == dependency


def test_a_transient_error_of_no_dependency_is_left_to_the_caller(outages):
    assert not note_transient(ValueError("a bug"), "upload publish", outages)
    assert note_transient(KafkaConnectionError("closed"), "upload publish", outages)
    assert "kafka" in outages.open


def record(name: str, message: str, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, message, None, None)


def test_the_retry_lines_of_client_libraries_are_counted_not_printed(outages):
    passes = ClientRetryFilter(outages).filter
    assert not passes(record("aiokafka", "Unable connect to node with id 111: Connect call failed"))
    assert not passes(record("aiokafka.consumer.fetcher", "Failed fetch messages from 111: NodeNotReadyError"))
    assert not passes(record("psycopg.pool", "error connecting in 'pool-1': connection refused", logging.WARNING))
    assert not passes(record("urllib3.connectionpool", "Retrying after connection broken", logging.WARNING))
    assert not passes(
        record(
            "opentelemetry.exporter.otlp.common.http",
            "Transient error HTTPConnectionPool(host="
            "'collector', port=4318): Max retries exceeded (Connection refused) encountered while "
            "exporting span batch, retrying in 1.03s.",
            logging.WARNING,
        )
    )
    assert set(outages.open) == {"kafka", "database", "s3", "collector"}
    assert outages.open["kafka"].errors == 2


def test_other_records_pass(outages):
    passes = ClientRetryFilter(outages).filter
    assert passes(record("aiokafka.consumer.group_coordinator", "OffsetCommit failed: group rebalancing"))
    assert passes(record("aiokafka", "Unable connect to node", logging.DEBUG))
    assert passes(record("services.upload", "Unable connect to the moon"))
    assert not outages.open
