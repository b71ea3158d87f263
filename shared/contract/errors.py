"""The error a request is answered with: the contract's HTTP status and error code, and a message
for people. Domain rules raise their own subclasses (a refused upload, a denied download); the HTTP
layer answers every one of them the same way (shared.runtime.httpapi)."""

from __future__ import annotations


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers
