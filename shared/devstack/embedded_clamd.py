"""Embedded clamd for `make run` and the tests (Debian `clamav-daemon`).

The tests load one custom signature (`EICAR_NDB_SIGNATURE`, an .ndb body signature matching the
EICAR test string anywhere in any file). `make run` first makes sure a scanner can run at all
(`prepare_for_run`): it installs clamav-daemon when it is missing and this user can (root or
password-less sudo, with apt), else stops with the command to run; with no signatures in
FS_CLAMAV_DB_DIR it tries freshclam once, and when freshclam cannot reach its mirror it scans with
the test signature and ClamAV's built-in checks, saying so in one warning line. Only
FS_CLAMD=disabled turns scanning off.

clamd reports a match as ``<Name>.UNOFFICIAL FOUND`` for signatures outside the official
databases, hence `EICAR_SIGNATURE_REPORTED`.
"""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import socket
import subprocess
import time
from pathlib import Path

from shared.adapters.scanner import CLAMD_MAX_SCAN_SECONDS
from shared.devstack.child_processes import die_with_launcher
from shared.runtime.retry import Backoff

log = logging.getLogger(__name__)

# Assembled from two halves so this source file itself is not flagged by virus scanners.
EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
EICAR_SIGNATURE_NAME = "FileShare.Test.EICAR"
EICAR_SIGNATURE_REPORTED = EICAR_SIGNATURE_NAME + ".UNOFFICIAL"
# .ndb format  Name:TargetType:Offset:HexSignature  (target 0 = any file, offset * = anywhere).
EICAR_NDB_SIGNATURE = f"{EICAR_SIGNATURE_NAME}:0:*:{EICAR.hex()}"
TEST_SIGNATURE_FILE = "fileshare-test.ndb"

# Database files clamd loads signatures from (sigtool/clamd: signatures.md).
SIGNATURE_SUFFIXES = frozenset(
    {
        ".cvd",
        ".cld",
        ".cud",  # official containers
        ".ndb",
        ".ndu",
        ".ldb",
        ".ldu",
        ".hdb",
        ".hdu",
        ".hsb",
        ".hsu",
        ".mdb",
        ".mdu",
        ".msb",
        ".msu",
        ".cdb",
        ".idb",
        ".pdb",
        ".gdb",
        ".wdb",
        ".yar",
        ".yara",
        ".cbc",
    }
)

# Over the 5 MB upload limit with room to spare; a base64/bot path never goes past 8 MiB.
DEFAULT_STREAM_MAX = "25M"

CLAMD_CANDIDATES = ("/usr/sbin/clamd", "/usr/local/sbin/clamd", "/usr/bin/clamd")


def clamd_binary() -> str | None:
    """Path of the clamd executable, or None when ClamAV is not installed."""
    found = shutil.which("clamd")
    if found:
        return found
    for candidate in CLAMD_CANDIDATES:
        if Path(candidate).is_file():
            return candidate
    return None


INSTALL_COMMAND = "sudo apt-get install clamav-daemon"
APT_SECONDS = 900
READY_POLL = Backoff(first=0.02, longest=0.25)  # how often a starting clamd is asked whether it is ready
FRESHCLAM_SECONDS = 900  # the official database is a few hundred MB


class ClamdUnavailable(RuntimeError):
    """clamd is missing and cannot be installed from here; the message says what to run."""


def _as_root_prefix() -> list[str] | None:
    """How to run apt-get as root from here: [] as root, sudo -n when password-less, else None."""
    if os.geteuid() == 0:
        return []
    if shutil.which("sudo") and subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0:
        return ["sudo", "-n"]
    return None


def ensure_installed() -> str:
    """The clamd executable, installing Debian's clamav-daemon first when it is missing and this
    user can. Raises ClamdUnavailable with the one command to run otherwise."""
    found = clamd_binary()
    if found:
        return found
    prefix = _as_root_prefix()
    if prefix is None or shutil.which("apt-get") is None:
        raise ClamdUnavailable(
            "clamd (Debian clamav-daemon) is not installed and this user cannot install it: run "
            f"`{INSTALL_COMMAND}`, then `make run` again (FS_CLAMD=disabled runs without malware scanning)"
        )
    log.warning("clamd is not installed: installing Debian's clamav-daemon with apt-get (once, a minute or two)")
    apt_env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for args in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", "clamav-daemon"]):
        done = subprocess.run(prefix + args, env=apt_env, capture_output=True, text=True, timeout=APT_SECONDS)
        if done.returncode != 0:
            raise ClamdUnavailable(
                f"`{' '.join(args)}` failed ({done.returncode}): "
                f"{(done.stderr or done.stdout).strip()[-600:]}\nrun `{INSTALL_COMMAND}` yourself"
            )
    found = clamd_binary()
    if found is None:
        raise ClamdUnavailable(f"clamav-daemon installed, yet no clamd in {CLAMD_CANDIDATES}")
    log.info("clamav-daemon installed: %s", found)
    return found


def freshclam_once(db_dir: Path, log_path: Path) -> bool:
    """One freshclam run into db_dir (no daemon, no retries beyond freshclam's own); True when db_dir
    then holds signatures. Its output goes to log_path."""
    binary = shutil.which("freshclam")
    if binary is None:
        return False
    db_dir.mkdir(parents=True, exist_ok=True)
    conf = log_path.with_suffix(".conf")
    conf.write_text(
        "\n".join(
            [
                "# Generated by shared/devstack/embedded_clamd.py for one run of freshclam.",
                f"DatabaseDirectory {db_dir.resolve()}",
                f"DatabaseOwner {pwd.getpwuid(os.getuid()).pw_name}",
                "DatabaseMirror database.clamav.net",
                "ConnectTimeout 10",
                "ReceiveTimeout 60",
                "NotifyClamd no",
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    log.info("no ClamAV signatures in %s: trying freshclam once (log: %s)", db_dir, log_path)
    with open(log_path, "wb") as out:
        try:
            done = subprocess.run(
                [binary, f"--config-file={conf}", "--stdout"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=FRESHCLAM_SECONDS,
            )
        except subprocess.TimeoutExpired:
            return False
    return done.returncode == 0 and has_signatures(db_dir)


def prepare_for_run(db_dir: Path, own_dir: Path) -> Path:
    """The signature folder `make run`'s clamd loads, clamd installed first when it can be.

    db_dir (FS_CLAMAV_DB_DIR) when it holds signatures; else what one freshclam run downloads into it
    (into own_dir/official when db_dir is not ours to write); else own_dir/test with the project's
    test signature, with one warning line: ClamAV's built-in checks still run, official ones do not."""
    ensure_installed()
    official = own_dir / "official"
    for folder in (db_dir, official):
        if has_signatures(folder):
            return folder
    writable = (
        db_dir.is_dir() and os.access(db_dir, os.W_OK) or not db_dir.exists() and os.access(db_dir.parent, os.W_OK)
    )
    target = db_dir if writable else official
    own_dir.mkdir(parents=True, exist_ok=True)
    if freshclam_once(target, own_dir / "freshclam.log"):
        log.info("ClamAV's official signatures downloaded into %s", target)
        return target
    test_dir = write_test_signatures(own_dir / "test").parent
    log.warning(
        "official ClamAV signatures are missing (none in %s; freshclam could not download them, see %s): "
        "clamd scans with the project's test signature and ClamAV's built-in checks only; "
        "run `freshclam` to scan for real malware",
        db_dir,
        own_dir / "freshclam.log",
    )
    return test_dir


def write_test_signatures(db_dir: Path | str) -> Path:
    """Write the EICAR test signature as `fileshare-test.ndb` into db_dir; returns its path."""
    db_dir = Path(db_dir)
    db_dir.mkdir(parents=True, exist_ok=True)
    path = db_dir / TEST_SIGNATURE_FILE
    path.write_text(EICAR_NDB_SIGNATURE + "\n", encoding="ascii")
    return path


def has_signatures(db_dir: Path | str) -> bool:
    """True when db_dir holds at least one non-empty signature database clamd can load."""
    db_dir = Path(db_dir)
    if not db_dir.is_dir():
        return False
    try:
        return any(
            p.suffix.lower() in SIGNATURE_SUFFIXES and p.is_file() and p.stat().st_size > 0 for p in db_dir.iterdir()
        )
    except OSError:
        return False


def write_clamd_config(
    run_dir: Path | str,
    db_dir: Path | str,
    tcp_port: int,
    *,
    tcp_addr: str = "127.0.0.1",
    local_socket: Path | str | None = None,
    stream_max: str = DEFAULT_STREAM_MAX,
    bytecode: bool | None = None,
) -> Path:
    """Write `clamd.conf` into run_dir and return its path.

    No `User` line: clamd keeps the identity it was started with (root or not). Bytecode is
    loaded only when the database folder has a bytecode database (None = decide from db_dir).
    """
    run_dir = Path(run_dir).resolve()
    db_dir = Path(db_dir).resolve()
    tmp_dir = run_dir / "tmp"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    if bytecode is None:
        bytecode = any((db_dir / f"bytecode.{ext}").exists() for ext in ("cvd", "cld"))
    lines = [
        "# Generated by shared/devstack/embedded_clamd.py; do not edit.",
        "Foreground yes",
        f"TCPSocket {int(tcp_port)}",
        f"TCPAddr {tcp_addr}",
        f"DatabaseDirectory {db_dir}",
        "OfficialDatabaseOnly no",
        f"PidFile {run_dir / 'clamd.pid'}",
        f"LogFile {run_dir / 'clamd.log'}",
        "LogTime yes",
        "LogFileMaxSize 10M",
        "LogRotate yes",
        "LogClean no",
        "ExtendedDetectionInfo yes",
        f"TemporaryDirectory {tmp_dir}",
        # Files over any limit must never come back "OK".
        "AlertExceedsMax yes",
        f"StreamMaxLength {stream_max}",
        f"MaxFileSize {stream_max}",
        f"MaxScanSize {stream_max}",
        f"MaxScanTime {int(CLAMD_MAX_SCAN_SECONDS * 1000)}",  # shared.adapters.scanner waits longer than this
        "MaxThreads 8",
        "ReadTimeout 30",
        "CommandReadTimeout 10",
        "ExitOnOOM yes",
        f"Bytecode {'yes' if bytecode else 'no'}",
        "DetectPUA no",
        # Every photo is disarmed (re-encoded from its pixels) after the scan; the image fuzzy hash
        # (decoding each image again, most of clamd's CPU per photo) only feeds signatures of known
        # images (docs/benchmarks.md, Bursts).
        "ScanImageFuzzyHash no",
    ]
    if local_socket is not None:
        lines += [f"LocalSocket {Path(local_socket).resolve()}", "LocalSocketMode 660", "FixStaleSocket yes"]
    conf = run_dir / "clamd.conf"
    conf.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return conf


def ping(host: str, port: int, timeout: float = 1.0) -> bool:
    """Blocking clamd PING -> PONG check over TCP."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(b"zPING\0")
            reply = b""
            while not reply.endswith(b"\0"):
                part = sock.recv(64)
                if not part:
                    break
                reply += part
            return reply.rstrip(b"\0").strip() == b"PONG"
    except OSError:
        return False


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no output)"


def start_clamd(
    run_dir: Path | str,
    db_dir: Path | str,
    port: int,
    *,
    ready_timeout: float = 120.0,
    local_socket: Path | str | None = None,
    stream_max: str = DEFAULT_STREAM_MAX,
) -> subprocess.Popen:
    """Start `clamd -c <run_dir>/clamd.conf` on 127.0.0.1:port and wait until it answers PING.

    With the tiny test database clamd is ready in well under a second; loading the full official
    database takes tens of seconds and ~1 GB of RAM, hence the generous default timeout. Raises
    RuntimeError (with the log tail) if clamd is missing, exits, or is not ready in time.
    """
    binary = clamd_binary()
    if binary is None:
        raise RuntimeError("clamd is not installed (Debian package clamav-daemon)")
    if not has_signatures(db_dir):
        raise RuntimeError(f"no ClamAV signatures in {db_dir}: clamd would refuse to start")
    run_dir = Path(run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    conf = write_clamd_config(run_dir, db_dir, port, local_socket=local_socket, stream_max=stream_max)
    out_path = run_dir / "clamd.out"
    started = time.monotonic()
    with open(out_path, "wb") as out:
        proc = subprocess.Popen(
            [binary, "-c", str(conf)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            close_fds=True,
            start_new_session=True,  # like every component: its leftovers die with its session
            preexec_fn=die_with_launcher(),  # and it dies with its launcher
        )
    deadline = started + ready_timeout
    polls = 0
    while True:
        code = proc.poll()
        if code is not None:
            raise RuntimeError(
                f"clamd exited with code {code} before it was ready.\n"
                f"--- {out_path} ---\n{_tail(out_path)}\n--- {run_dir / 'clamd.log'} ---\n"
                f"{_tail(run_dir / 'clamd.log')}"
            )
        if ping("127.0.0.1", port, timeout=1.0):
            break
        if time.monotonic() > deadline:
            stop_clamd(proc)
            raise RuntimeError(
                f"clamd not ready on 127.0.0.1:{port} after {ready_timeout:.0f}s.\n"
                f"--- {run_dir / 'clamd.log'} ---\n{_tail(run_dir / 'clamd.log')}"
            )
        # Back-off poll on the process and the port (not a synchronisation sleep).
        polls += 1
        proc_wait_or_timeout(proc, READY_POLL.delay(polls))
    log.info("clamd ready on 127.0.0.1:%d in %.2fs (pid %d)", port, time.monotonic() - started, proc.pid)
    return proc


def proc_wait_or_timeout(proc: subprocess.Popen, seconds: float) -> None:
    """Wait up to `seconds` for proc to exit (returns early when it does)."""
    try:
        proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        pass


def stop_clamd(proc: subprocess.Popen, timeout: float = 15.0) -> int | None:
    """SIGTERM clamd, wait for it, SIGKILL if it will not go. Returns the exit code."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)
    return proc.returncode


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
