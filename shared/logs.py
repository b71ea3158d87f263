"""Logging: one line per event, key=value context (file_id, conversation_id) on every line."""
from __future__ import annotations

import logging
import sys


class _ContextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ctx = getattr(record, "ctx", None)
        if ctx:
            line += " " + " ".join(f"{k}={v}" for k, v in ctx.items() if v is not None)
        return line


def setup_logging(service: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_ContextFormatter(f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("aiokafka", "urllib3", "uvicorn.access", "httpx", "httpcore", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def file_ctx(event) -> dict:
    """Log context of a pipeline event: log.info("...", **file_ctx(event))."""
    return {"extra": {"ctx": {k: getattr(event, k, None) for k in ("file_id", "conversation_id", "account_id")}}}
