"""Log forging: an id from outside can never start a line of its own in a service log."""

from __future__ import annotations

import io
import logging

import pytest

from shared.runtime.logs import escape_controls, setup_logging

FORGED = "x\nFORGED 2026-11-30 retention INFO forget request done"


@pytest.fixture
def service_log():
    """What a service writes to its log, through the formatter setup_logging installs."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    setup_logging("retention")
    out = io.StringIO()
    root.handlers[0].setStream(out)
    try:
        yield out
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])


def forged_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("FORGED")]


def test_a_newline_in_a_request_id_cannot_forge_a_line(service_log):
    log = logging.getLogger("services.retention.handlers")
    log.info("forget request %s done", FORGED, extra={"ctx": {"request_id": FORGED, "account_id": "a\r\nFORGED"}})

    text = service_log.getvalue()
    assert forged_lines(text) == []
    assert len(text.splitlines()) == 1
    assert "forget request x\\nFORGED 2026" in text and "request_id=x\\nFORGED" in text
    assert "account_id=a\\r\\nFORGED" in text


def test_exception_messages_in_a_traceback_are_indented_lines(service_log):
    log = logging.getLogger("services.retention.handlers")
    try:
        raise ValueError(f"bad request id {FORGED}")
    except ValueError:
        log.exception("forget failed for %s", FORGED)
    lines = service_log.getvalue().splitlines()
    assert forged_lines("\n".join(lines)) == []
    assert lines[0].endswith("forget failed for x\\nFORGED 2026-11-30 retention INFO forget request done")
    assert all(line.startswith("    ") for line in lines[1:]) and any("Traceback" in line for line in lines[1:])


@pytest.mark.parametrize(
    "raw, escaped",
    [
        ("a\nb", "a\\nb"),
        ("a\rb", "a\\rb"),
        ("a\tb", "a\\tb"),
        ("\x1b[31mred", "\\x1b[31mred"),
        ("a\u2028b", "a\\u2028b"),
        ("a\x85b", "a\\x85b"),
        ("\x00", "\\x00"),
        ("plain id-42 é ü", "plain id-42 é ü"),
    ],
)
def test_control_characters_are_escaped(raw, escaped):
    assert escape_controls(raw) == escaped
