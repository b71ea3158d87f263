"""clamd INSTREAM replies -> verdicts: only an explicit OK is clean, anything unexpected is an error."""

import pytest

from shared.adapters.scanner import ScannerError, ScannerUnavailable, ScanResult, parse_reply


@pytest.mark.parametrize("reply", [b"stream: OK\0", b"stream: OK", b"stream: OK\n\0"])
def test_ok_is_clean(reply):
    assert parse_reply(reply) == ScanResult(clean=True, signature=None)


@pytest.mark.parametrize(
    ("reply", "signature"),
    [
        (b"stream: Eicar-Test-Signature FOUND\0", "Eicar-Test-Signature"),
        (b"stream: Eicar-Test-Signature.UNOFFICIAL FOUND\0", "Eicar-Test-Signature.UNOFFICIAL"),
        # AlertExceedsMax yes: an over-limit file is a hit, never clean
        (b"stream: Heuristics.Limits.Exceeded.MaxFileSize FOUND\0", "Heuristics.Limits.Exceeded.MaxFileSize"),
    ],
)
def test_found_is_malware_with_its_signature_name(reply, signature):
    assert parse_reply(reply) == ScanResult(clean=False, signature=signature)


@pytest.mark.parametrize(
    "reply",
    [
        b"INSTREAM size limit exceeded. ERROR\0",
        b"stream: Can't allocate memory ERROR\0",
        b"ERROR\0",
    ],
)
def test_an_error_reply_is_a_scanner_error_not_a_verdict(reply):
    with pytest.raises(ScannerError) as caught:
        parse_reply(reply)
    assert reply.rstrip(b"\0").decode() in str(caught.value)  # clamd's own words reach the rejection detail


@pytest.mark.parametrize(
    "reply",
    [
        b"",
        b"\0",
        b"PONG\0",
        b"stream: \0",
        b"stream: OK but not really\0",
        b"stream: FOUND\0",
        b"1: stream: OK\0",  # IDSESSION framing, which we never ask for
        b"\xff\xfe\x00garbage\0",
        b"UNKNOWN COMMAND\0",
    ],
)
def test_anything_else_is_a_scanner_error_never_clean(reply):
    with pytest.raises(ScannerError):
        parse_reply(reply)


def test_scanner_error_and_unavailable_are_unrelated():
    # A verdict-less answer must not be retried as an outage, nor an outage rejected as an answer.
    assert not issubclass(ScannerError, ScannerUnavailable) and not issubclass(ScannerUnavailable, ScannerError)
    assert issubclass(ScannerUnavailable, ConnectionError)


def test_a_scan_waits_longer_than_clamd_may_take_so_a_slow_file_gets_a_verdict_not_endless_retries():
    import re
    from pathlib import Path

    from shared.adapters.scanner import CLAMD_MAX_SCAN_SECONDS, ClamdScanner, scanner_from_settings

    compose = (Path(__file__).resolve().parents[2] / "docker-compose.yml").read_text()
    [compose_ms] = re.findall(r"MaxScanTime (\d+)", compose)
    assert int(compose_ms) / 1000 == CLAMD_MAX_SCAN_SECONDS  # the embedded clamd.conf uses the constant
    scanner = scanner_from_settings(type("S", (), {"clamd": "127.0.0.1:3310"})())
    assert isinstance(scanner, ClamdScanner) and scanner.scan_timeout > CLAMD_MAX_SCAN_SECONDS


def test_the_scanner_fails_closed_unset_refuses_disabled_is_the_explicit_opt_out(caplog):
    from prometheus_client import CollectorRegistry

    from shared.adapters.scanner import (
        ClamdScanner,
        DisabledScanner,
        ScannerNotConfigured,
        expose_scanner,
        scanner_from_settings,
    )
    from shared.settings import ConfigurationError

    for unset in (None, "", "  "):
        with pytest.raises(ScannerNotConfigured, match="FS_CLAMD is not set") as caught:
            scanner_from_settings(type("S", (), {"clamd": unset})())
        assert isinstance(caught.value, ConfigurationError)  # run_service logs it and exits non-zero
    with caplog.at_level("WARNING", logger="shared.adapters.scanner"):
        disabled = scanner_from_settings(type("S", (), {"clamd": "disabled"})())
    assert isinstance(disabled, DisabledScanner)
    assert any("MALWARE SCANNING IS DISABLED" in r.getMessage() for r in caplog.records)
    assert isinstance(scanner_from_settings(type("S", (), {"clamd": "DISABLED"})()), DisabledScanner)
    for scanner, kind, gauge in ((disabled, "disabled", 0.0), (ClamdScanner("127.0.0.1:3310"), "clamd", 1.0)):
        registry = CollectorRegistry()
        assert expose_scanner(scanner, registry)() == {"scanner": kind}
        assert registry.get_sample_value("fileshare_scanner_enabled") == gauge
