"""Reading an untrusted OOXML package (a ZIP) with limits checked before and while inflating.

The sizes a ZIP declares are checked first (parts, total, expansion of one part); then every
part is inflated chunk by chunk and counted, so a part that lies about its size is stopped at
the limit, never inflated whole first (zipfile also stops at the declared size and checks the CRC).
"""

from __future__ import annotations

import io
import zipfile

from .errors import DocumentRejected, wrapped_errors
from .limits import DocumentLimits

_CHUNK = 256 * 1024
_ENCRYPTED_FLAG = 0x1


def read_package(data: bytes, limits: DocumentLimits) -> dict[str, bytes]:
    """The parts of the package by name, in the ZIP's order."""
    with wrapped_errors("corrupt_file", "not a readable ZIP package"):
        archive = zipfile.ZipFile(io.BytesIO(data))
        entries = [info for info in archive.infolist() if not info.is_dir()]
    check_declared(entries, limits)
    parts: dict[str, bytes] = {}
    names: set[str] = set()
    total = 0
    for info in entries:
        folded = _checked_name(info.filename).casefold()  # part names compare case-insensitively
        if folded in names:
            raise DocumentRejected("corrupt_file", f"the package holds {info.filename!r} twice")
        names.add(folded)
        parts[info.filename] = read_part(archive, info, limits, limits.max_expanded_bytes - total)
        total += len(parts[info.filename])
    return parts


def check_declared(entries: list[zipfile.ZipInfo], limits: DocumentLimits) -> None:
    if len(entries) > limits.max_parts:
        raise DocumentRejected("file_too_complex", f"{len(entries)} parts, limit {limits.max_parts}")
    if any(info.flag_bits & _ENCRYPTED_FLAG for info in entries):
        raise DocumentRejected("encrypted_file", "the package holds encrypted parts")
    for info in entries:
        if info.file_size > part_limit(info, limits):
            raise DocumentRejected("file_too_complex", _expansion_detail(info, info.file_size + 1, limits))
    total = sum(info.file_size for info in entries)
    if total > limits.max_expanded_bytes:
        raise DocumentRejected(
            "file_too_complex", f"the package expands to {total} bytes, limit {limits.max_expanded_bytes}"
        )


def part_limit(info: zipfile.ZipInfo, limits: DocumentLimits) -> int:
    return max(limits.expansion_floor_bytes, limits.max_part_expansion * max(info.compress_size, 1))


def read_part(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limits: DocumentLimits, remaining: int) -> bytes:
    cap = min(part_limit(info, limits), remaining)
    chunks: list[bytes] = []
    size = 0
    with wrapped_errors("corrupt_file", f"cannot inflate {info.filename!r}"):
        with archive.open(info) as stream:
            while chunk := stream.read(_CHUNK):
                size += len(chunk)
                if size > cap:
                    raise DocumentRejected("file_too_complex", _expansion_detail(info, size, limits))
                chunks.append(chunk)
    return b"".join(chunks)


def _expansion_detail(info: zipfile.ZipInfo, size: int, limits: DocumentLimits) -> str:
    return (
        f"part {info.filename!r} expands from {info.compress_size} to more than {size - 1} bytes "
        f"(limit {limits.max_part_expansion}x, {limits.max_expanded_bytes} bytes in all)"
    )


def _checked_name(name: str) -> str:
    segments = name.split("/")
    if name.startswith("/") or "\\" in name or any(s in ("", ".", "..") for s in segments):
        raise DocumentRejected("corrupt_file", f"the package holds a part named {name!r}")
    return name
