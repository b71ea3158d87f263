"""The product's rules as pure functions (no I/O), each rule once: who may send what where
(services.upload.policy), who may read what (access), how large a file may be (limits).
A rule that says no gives a Refused: the contract's HTTP status, error code and message."""

from __future__ import annotations

from shared.contract.errors import ApiError


class Refused(ApiError):
    """A rule said no: the contract's HTTP status and error code."""


def enforce(refused: Refused | None) -> None:
    """Raise a rule's answer when it is a refusal."""
    if refused is not None:
        raise refused
