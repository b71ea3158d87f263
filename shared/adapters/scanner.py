"""Malware scanner port (one port per outside system) and its clamd implementation.

`ClamdScanner` speaks clamd's INSTREAM protocol over asyncio: ``zINSTREAM\\0``, then chunks each
prefixed with a 4-byte big-endian length, then a zero-length chunk; clamd answers one
NUL-terminated line:

* ``stream: OK``                               -> ``ScanResult(clean=True)``
* ``stream: <Signature> FOUND``                -> ``ScanResult(clean=False, signature=...)``
  (with ``AlertExceedsMax yes`` a file over MaxFileSize/MaxScanSize comes back as
  ``Heuristics.Limits.Exceeded.* FOUND``: never clean)
* ``INSTREAM size limit exceeded. ERROR`` etc.  -> raises ``ScannerError`` (a verdict-less answer
  about this file; the caller rejects, it must never be read as clean)

Connection refused, resets without an answer and per-call timeouts raise ``ScannerUnavailable``:
a transient failure, the caller retries with backoff (never "assume clean").

The two exception types are deliberately not related to each other, so ``except ScannerError``
can never swallow a transient outage (and vice versa). ``ScannerUnavailable`` is a
``ConnectionError`` so generic transient-error retry helpers treat it like any other outage.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from prometheus_client import CollectorRegistry, Gauge

from shared.settings import ConfigurationError, Settings

log = logging.getLogger(__name__)

DISABLED = "disabled"  # FS_CLAMD=disabled: the explicit opt-out of malware scanning

DEFAULT_TIMEOUT_SECONDS = 30.0  # PING, VERSION, connecting
# A scan may take up to clamd's MaxScanTime (60 s in our clamd.conf and docker-compose), after
# which clamd answers Heuristics.Limits.Exceeded.MaxScanTime (AlertExceedsMax). Waiting less would
# turn a slow file into "scanner unavailable", retried forever on its partition.
CLAMD_MAX_SCAN_SECONDS = 60.0
SCAN_TIMEOUT_SECONDS = CLAMD_MAX_SCAN_SECONDS + 30.0
DEFAULT_CHUNK_BYTES = 256 * 1024


@dataclass(frozen=True)
class ScanResult:
    clean: bool
    signature: str | None = None


class ScannerError(RuntimeError):
    """clamd answered, but with no verdict for this file (size limit, protocol error, ...).

    Not transient: retrying the same bytes gives the same answer. Never treat as clean.
    """


class ScannerUnavailable(ConnectionError):
    """clamd could not be reached or did not answer in time. Transient: retry with backoff."""


@runtime_checkable
class Scanner(Protocol):
    async def scan(self, data: bytes) -> ScanResult: ...

    async def ping(self) -> bool: ...


def parse_address(address: str) -> tuple[str, int] | str:
    """``"host:port"`` / ``"[::1]:3310"`` -> (host, port); ``"/path/sock"`` or ``"unix:/path"`` -> path."""
    address = address.strip()
    if address.startswith("unix:"):
        return address[len("unix:") :]
    if "/" in address:
        return address
    if address.startswith("["):  # [ipv6]:port
        host, _, port = address[1:].partition("]:")
    else:
        host, sep, port = address.rpartition(":")
        if not sep:
            raise ValueError(f"clamd address must be host:port or a unix socket path, got {address!r}")
    try:
        return host, int(port)
    except ValueError:
        raise ValueError(f"clamd address has a bad port: {address!r}") from None


def parse_reply(reply: bytes) -> ScanResult:
    """Turn one clamd INSTREAM answer into a verdict, or raise ScannerError."""
    text = reply.rstrip(b"\0").decode("utf-8", "replace").strip()
    # The stream name is "stream" (or "<n>: stream" in IDSESSION mode, which we do not use).
    body = text.split(": ", 1)[1] if text.startswith("stream: ") else text
    if text.endswith(" ERROR") or text == "ERROR":
        raise ScannerError(f"clamd error: {text}")
    if body == "OK":
        return ScanResult(clean=True, signature=None)
    if body.endswith(" FOUND"):
        signature = body[: -len(" FOUND")].strip()
        return ScanResult(clean=False, signature=signature or "unknown")
    raise ScannerError(f"unexpected clamd reply: {text!r}")


class ClamdScanner:
    """Async clamd client: one connection per call, so concurrent scans are independent."""

    def __init__(
        self,
        address: str,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        scan_timeout: float = SCAN_TIMEOUT_SECONDS,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    ) -> None:
        self.address = address
        self._target = parse_address(address)
        self.timeout = timeout
        self.scan_timeout = scan_timeout
        self.chunk_bytes = chunk_bytes

    def __repr__(self) -> str:
        return f"ClamdScanner({self.address!r}, timeout={self.timeout})"

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            if isinstance(self._target, str):
                return await asyncio.open_unix_connection(self._target)
            host, port = self._target
            return await asyncio.open_connection(host, port)
        except OSError as exc:  # refused, no such socket file, unreachable, ...
            raise ScannerUnavailable(f"cannot connect to clamd at {self.address}: {exc}") from exc

    @staticmethod
    async def _close(writer: asyncio.StreamWriter) -> None:
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass

    async def _command(self, command: bytes) -> bytes:
        reader, writer = await self._connect()
        try:
            writer.write(b"z" + command + b"\0")
            await writer.drain()
            return await reader.readuntil(b"\0")
        finally:
            await self._close(writer)

    async def ping(self) -> bool:
        try:
            async with asyncio.timeout(min(self.timeout, 5.0)):
                return (await self._command(b"PING")).rstrip(b"\0").strip() == b"PONG"
        except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            return False

    async def version(self) -> str:
        """clamd's VERSION line (engine and database version), for logs and readiness output."""
        try:
            async with asyncio.timeout(self.timeout):
                return (await self._command(b"VERSION")).rstrip(b"\0").decode("utf-8", "replace").strip()
        except TimeoutError as exc:
            raise ScannerUnavailable(f"clamd at {self.address} did not answer VERSION in {self.timeout}s") from exc
        except (OSError, asyncio.IncompleteReadError) as exc:
            raise ScannerUnavailable(f"clamd at {self.address} failed: {exc}") from exc

    async def scan(self, data: bytes) -> ScanResult:
        try:
            async with asyncio.timeout(self.scan_timeout):
                return await self._instream(data)
        except TimeoutError as exc:
            raise ScannerUnavailable(
                f"clamd at {self.address} gave no answer within {self.scan_timeout}s for {len(data)} bytes"
            ) from exc

    async def _instream(self, data: bytes) -> ScanResult:
        reader, writer = await self._connect()
        # Read concurrently with sending: clamd answers early (and closes) when the stream goes
        # over StreamMaxLength, and a reply already received must not be lost to a reset.
        reply_task = asyncio.ensure_future(reader.readuntil(b"\0"))
        send_error: BaseException | None = None
        try:
            try:
                writer.write(b"zINSTREAM\0")
                view = memoryview(data)
                for start in range(0, len(view), self.chunk_bytes):
                    if reply_task.done():
                        break  # clamd already answered (size limit): stop sending
                    chunk = view[start : start + self.chunk_bytes]
                    writer.write(struct.pack(">I", len(chunk)))
                    writer.write(chunk)
                    await writer.drain()
                if not reply_task.done():
                    writer.write(struct.pack(">I", 0))
                    await writer.drain()
            except OSError as exc:  # reset/broken pipe while sending: the reply may still be there
                send_error = exc
            try:
                reply = await reply_task
            except asyncio.IncompleteReadError as exc:
                if exc.partial:
                    reply = exc.partial
                else:
                    raise ScannerUnavailable(
                        f"clamd at {self.address} closed the connection without an answer"
                        + (f" ({send_error})" if send_error else "")
                    ) from exc
            except OSError as exc:
                raise ScannerUnavailable(f"clamd at {self.address} failed: {exc}") from exc
            except asyncio.LimitOverrunError as exc:
                raise ScannerError(f"clamd at {self.address} sent an oversized reply") from exc
        finally:
            if not reply_task.done():
                reply_task.cancel()
            await self._close(writer)
        return parse_reply(reply)


class ScannerNotConfigured(ConfigurationError):
    """FS_CLAMD is unset: the sanitizer refuses to start rather than pass every file as clean."""


class DisabledScanner:
    """Scanning switched off (FS_CLAMD=disabled): every file is reported clean, said loudly once."""

    def __init__(self, reason: str = "FS_CLAMD=disabled") -> None:
        self.reason = reason
        log.warning(
            "MALWARE SCANNING IS DISABLED (%s): uploaded files are NOT checked for malware. "
            "Set FS_CLAMD=host:port (or a unix socket path) of a clamd to enable it.",
            reason,
        )

    def __repr__(self) -> str:
        return f"DisabledScanner({self.reason!r})"

    async def scan(self, data: bytes) -> ScanResult:
        return ScanResult(clean=True, signature=None)

    async def ping(self) -> bool:
        return True


def scanner_from_settings(settings: Settings) -> Scanner:
    """FS_CLAMD=host:port or a socket -> ClamdScanner on it; `disabled` -> DisabledScanner (logged
    loudly); unset -> ScannerNotConfigured: the scanner fails closed, never silently open.

    Timeouts: DEFAULT_TIMEOUT_SECONDS for commands, SCAN_TIMEOUT_SECONDS (above clamd's
    MaxScanTime) for a scan.
    """
    address = (getattr(settings, "clamd", None) or "").strip()
    if not address:
        raise ScannerNotConfigured(
            "FS_CLAMD is not set: no malware scanner, so no file may pass. Set FS_CLAMD=host:port (or a "
            "unix socket path) of clamd, or FS_CLAMD=disabled to run without malware scanning (not for production)"
        )
    if address.lower() == DISABLED:
        return DisabledScanner()
    return ClamdScanner(address)


def expose_scanner(scanner: Scanner, registry: CollectorRegistry) -> Callable[[], dict]:
    """The gauge `fileshare_scanner_enabled` (1 clamd, 0 disabled) in `registry`, and the detail of
    the service's /readyz: {"scanner": "clamd" | "disabled"}."""
    kind = DISABLED if isinstance(scanner, DisabledScanner) else "clamd"
    Gauge(
        "fileshare_scanner_enabled", "1 when files are scanned for malware, 0 when FS_CLAMD=disabled", registry=registry
    ).set(0 if kind == DISABLED else 1)
    return lambda: {"scanner": kind}
