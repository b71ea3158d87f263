"""ClamdScanner against a real clamd (Debian clamav-daemon) with the custom EICAR .ndb signature.

No mocks: one clamd per module on a free port (TCP and a unix socket), readiness by PING polling.
"""

from __future__ import annotations

import asyncio
import io
import os
import time
from pathlib import Path

import pytest
from PIL import Image

from shared.adapters.scanner import (
    ClamdScanner,
    DisabledScanner,
    ScannerError,
    ScannerUnavailable,
    scanner_from_settings,
)
from shared.devstack.embedded_clamd import (
    EICAR,
    EICAR_SIGNATURE_REPORTED,
    clamd_binary,
    free_port,
    has_signatures,
    start_clamd,
    stop_clamd,
    write_test_signatures,
)
from shared.settings import Settings

pytestmark = pytest.mark.integration


def test_clamd_is_installed():
    """A missing clamd is a failure of setup (.ci/run installs Debian's clamav-daemon), never a skip."""
    assert clamd_binary() is not None, "clamd not installed: apt-get install clamav-daemon"


class Clamd:
    def __init__(self, proc, port: int, socket_path: Path, run_dir: Path, start_seconds: float):
        self.proc = proc
        self.port = port
        self.socket_path = socket_path
        self.run_dir = run_dir
        self.start_seconds = start_seconds

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


def _start(tmp_path_factory, name: str) -> Clamd:
    base = tmp_path_factory.mktemp(name)
    db_dir = base / "db"
    write_test_signatures(db_dir)
    assert has_signatures(db_dir)
    port = free_port()
    sock = base / "clamd.sock"
    t0 = time.monotonic()
    proc = start_clamd(base / "run", db_dir, port, local_socket=sock, ready_timeout=60)
    return Clamd(proc, port, sock, base / "run", time.monotonic() - t0)


@pytest.fixture(scope="module")
def clamd(tmp_path_factory):
    server = _start(tmp_path_factory, "clamd")
    print(f"\nclamd (1 custom signature) ready in {server.start_seconds * 1000:.0f} ms")
    yield server
    assert stop_clamd(server.proc) is not None


def _png(size=(64, 48)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (30, 120, 200)).save(buf, format="PNG")
    return buf.getvalue()


def _jpeg(size=(64, 48), **save_args) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 80, 10)).save(buf, format="JPEG", quality=90, **save_args)
    return buf.getvalue()


def _jpeg_with_comment(comment: bytes) -> bytes:
    """Insert a COM (0xFFFE) segment carrying `comment` right after SOI."""
    base = _jpeg()
    assert base[:2] == b"\xff\xd8"
    segment = b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment
    return base[:2] + segment + base[2:]


async def test_clean_png_is_clean(clamd):
    scanner = ClamdScanner(clamd.address, timeout=10)
    assert await scanner.ping()
    result = await scanner.scan(_png())
    assert result.clean and result.signature is None


async def test_eicar_appended_after_jpeg_is_found(clamd):
    scanner = ClamdScanner(clamd.address, timeout=10)
    data = _jpeg() + EICAR
    Image.open(io.BytesIO(data)).load()  # still a valid JPEG: a polyglot
    result = await scanner.scan(data)
    assert not result.clean
    assert result.signature == EICAR_SIGNATURE_REPORTED


async def test_eicar_in_jpeg_comment_is_found(clamd):
    scanner = ClamdScanner(clamd.address, timeout=10)
    data = _jpeg_with_comment(b"hello " + EICAR + b" world")
    Image.open(io.BytesIO(data)).load()
    result = await scanner.scan(data)
    assert not result.clean
    assert result.signature == EICAR_SIGNATURE_REPORTED


async def test_unix_socket_transport(clamd):
    scanner = ClamdScanner(str(clamd.socket_path), timeout=10)
    assert await scanner.ping()
    assert (await scanner.scan(_png())).clean
    result = await scanner.scan(_png() + EICAR)
    assert result.signature == EICAR_SIGNATURE_REPORTED


async def test_over_stream_max_length_is_an_error_not_clean(clamd):
    scanner = ClamdScanner(clamd.address, timeout=30)
    data = _jpeg() + os.urandom(26 * 1024 * 1024)  # StreamMaxLength is 25M
    with pytest.raises(ScannerError, match="size limit exceeded"):
        await scanner.scan(data)
    # clamd is still fine afterwards
    assert (await scanner.scan(_png())).clean


async def test_five_megabyte_photo_is_scanned_clean(clamd):
    scanner = ClamdScanner(clamd.address, timeout=30)
    # A noisy JPEG near the 5 MB upload limit (noise does not compress): many INSTREAM chunks.
    noise = Image.frombytes("RGB", (2200, 2200), os.urandom(2200 * 2200 * 3))
    buf = io.BytesIO()
    noise.save(buf, format="JPEG", quality=95)
    data = buf.getvalue()[: 5 * 1024 * 1024 - 2] + b"\xff\xd9"
    assert len(data) > 4 * 1024 * 1024
    for _ in range(3):  # the same connection-per-call client, repeatedly
        result = await scanner.scan(data)
        assert result.clean and result.signature is None


async def test_concurrent_scans(clamd):
    scanner = ClamdScanner(clamd.address, timeout=20)
    inputs = [_png(), _jpeg() + EICAR] * 8
    results = await asyncio.gather(*(scanner.scan(d) for d in inputs))
    assert [r.clean for r in results] == [True, False] * 8


async def test_nothing_listening_is_unavailable():
    port = free_port()
    scanner = ClamdScanner(f"127.0.0.1:{port}", timeout=5)
    assert not await scanner.ping()
    with pytest.raises(ScannerUnavailable):
        await scanner.scan(_png())


async def test_missing_unix_socket_is_unavailable(tmp_path):
    scanner = ClamdScanner(str(tmp_path / "nope.sock"), timeout=5)
    with pytest.raises(ScannerUnavailable):
        await scanner.scan(_png())


async def test_stopped_clamd_is_unavailable(tmp_path_factory):
    server = _start(tmp_path_factory, "clamd-stop")
    scanner = ClamdScanner(server.address, timeout=5)
    try:
        assert (await scanner.scan(_png())).clean
    finally:
        stop_clamd(server.proc)
    assert not await scanner.ping()
    with pytest.raises(ScannerUnavailable):
        await scanner.scan(_png())


async def test_silent_peer_times_out_as_unavailable():
    """A peer that accepts and never answers (hung clamd) -> ScannerUnavailable after the timeout."""
    accepted = []

    async def hold(reader, writer):
        accepted.append(writer)
        await reader.read()  # read until the client gives up; never answer

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        scanner = ClamdScanner(f"127.0.0.1:{port}", timeout=0.5, scan_timeout=0.5)
        with pytest.raises(ScannerUnavailable, match=r"no answer within 0\.5s"):
            await scanner.scan(_png())
        assert accepted  # it was the silent peer, not a refused connection
    finally:
        for w in accepted:
            w.close()
        server.close()
        await server.wait_closed()


def test_scanner_from_settings(clamd, caplog):
    s = Settings(clamd=clamd.address)
    scanner = scanner_from_settings(s)
    assert isinstance(scanner, ClamdScanner) and scanner.address == clamd.address
    with caplog.at_level("WARNING", logger="shared.adapters.scanner"):
        disabled = scanner_from_settings(Settings(clamd="disabled"))
    assert isinstance(disabled, DisabledScanner)
    assert any("DISABLED" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)
    result = asyncio.run(disabled.scan(EICAR))
    assert result.clean
