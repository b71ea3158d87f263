"""The base of the domain errors that refuse a file with a contract rejection reason.

Images and documents each raise their own subclass; the worker pool hands any of them back to
the caller as is (every other failure of a worker call becomes processing_failed).
"""

from __future__ import annotations


class Rejected(Exception):
    """A file we refuse; `reason` is a contract rejection code out of REASONS, `detail` says why."""

    REASONS: frozenset[str] = frozenset()

    def __init__(self, reason: str, detail: str) -> None:
        if reason not in self.REASONS:
            raise ValueError(f"unknown rejection reason {reason!r} for {type(self).__name__}")
        # Both go to Exception.args so the error pickles across the worker-process pipe.
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}"
