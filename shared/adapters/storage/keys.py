"""The one place that builds storage paths, from validated parts.

Layout: {account_id}/{consumer_id}/{conversation_id}/{file_id}/{variant},
so one consumer's files share a prefix and can be deleted together.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

# Ids come from tokens and platform events: the contract's id shape never leaves its path segment.
from shared.contract.ids import check_id

VARIANTS = ("original", "sanitized", "final")


@dataclass(frozen=True)
class ObjectKey:
    account_id: str
    consumer_id: str
    conversation_id: str
    file_id: str
    variant: str

    def __post_init__(self):
        for name in ("account_id", "consumer_id", "conversation_id", "file_id"):
            check_id(getattr(self, name), name)
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown variant {self.variant!r}")

    def __str__(self) -> str:
        return f"{self.account_id}/{self.consumer_id}/{self.conversation_id}/{self.file_id}/{self.variant}"

    def with_variant(self, variant: str) -> ObjectKey:
        """The same file's other variant (original → sanitized → final)."""
        return replace(self, variant=variant)

    @classmethod
    def parse(cls, key: str) -> ObjectKey:
        parts = key.split("/")
        if len(parts) != 5:
            raise ValueError(f"not a file object key: {key!r}")
        return cls(*parts)


def file_of(key: str) -> tuple[str, str, str, str] | None:
    """(account_id, consumer_id, conversation_id, file_id) of a stored object of the layout, whatever
    its last segment; None for a key outside the layout. Read back from the store: nothing is checked
    but the shape, so every object a file left behind is found (and can be deleted)."""
    parts = key.split("/")
    return (parts[0], parts[1], parts[2], parts[3]) if len(parts) == 5 else None


def object_key(account_id: str, consumer_id: str, conversation_id: str, file_id: str, variant: str) -> str:
    return str(ObjectKey(account_id, consumer_id, conversation_id, file_id, variant))


def consumer_prefix(account_id: str, consumer_id: str) -> str:
    return f"{check_id(account_id, 'account_id')}/{check_id(consumer_id, 'consumer_id')}/"


def consumer_key_name(account_id: str, consumer_id: str, key_id: str) -> str:
    """Where a consumer key is kept in the key bucket: under the consumer's prefix, named by its id."""
    return consumer_prefix(account_id, consumer_id) + key_id


def consumer_key_owner(name: str) -> tuple[str, str]:
    """(account_id, consumer_id) of a consumer key's object name (consumer_key_name)."""
    account_id, consumer_id, _ = name.split("/", 2)
    return account_id, consumer_id


def file_prefix(account_id: str, consumer_id: str, conversation_id: str, file_id: str) -> str:
    return object_key(account_id, consumer_id, conversation_id, file_id, "original").rsplit("/", 1)[0] + "/"
