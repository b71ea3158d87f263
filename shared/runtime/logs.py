"""Logging: one line per event, key=value context (file_id, conversation_id) on every line.

Ids in logs come from outside (HTTP paths, headers, Kafka records: a `gdpr.forget` request_id, a
bot's file name). A newline in one of them must not start a forged line in a log that is read as
an audit (retention's log of erasures), so control characters of the message and of every context
key and value are escaped (`\\n`, `\\r`, `\\t`, `\\x1b`, `\\u2028`, ...), and the lines of a traceback
are indented: a line that does not start with whitespace is always the start of a record.
"""

from __future__ import annotations

import logging
import re
import sys

from shared.runtime.outages import ClientRetryFilter

# C0 and C1 control characters, DEL, and the Unicode line and paragraph separators.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape_controls(text: object) -> str:
    """`text` as one printable line: every control character replaced by its escape sequence."""
    return _CONTROL.sub(lambda m: _NAMED.get(m.group(), m.group().encode("unicode_escape").decode()), str(text))


class _ContextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        record.message = record.getMessage()
        if self.usesTime():
            record.asctime = self.formatTime(record, self.datefmt)
        line = escape_controls(self.formatMessage(record))
        ctx = getattr(record, "ctx", None)
        if ctx:
            line += " " + " ".join(
                f"{escape_controls(k)}={escape_controls(v)}" for k, v in ctx.items() if v is not None
            )
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        for extra in (record.exc_text, record.stack_info and self.formatStack(record.stack_info)):
            if extra:
                # Traceback lines (whose exception message may hold an attacker's id) stay
                # readable, each indented so none can pass for a record of its own.
                line += "".join("\n    " + escape_controls(part) for part in extra.splitlines())
        return line


def setup_logging(service: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_ContextFormatter(f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(ClientRetryFilter())  # a dependency outage: one line when it starts, one when it ends
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("aiokafka", "urllib3", "uvicorn.access", "httpx", "httpcore", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def log_ctx(**fields) -> dict:
    """Log context, appended to the line as k=v (escaped; None left out): log.info("...", **log_ctx(request_id=r))."""
    return {"extra": {"ctx": fields}}


def file_ctx(event) -> dict:
    """Log context of a pipeline event (or anything naming a file): log.info("...", **file_ctx(event))."""
    return log_ctx(**{k: getattr(event, k, None) for k in ("file_id", "conversation_id", "account_id")})
