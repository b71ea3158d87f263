"""An ObjectStore in a dict, for unit tests of the domain code (the real stores are checked by
tests/storage_contract.py). `clock` stamps last_modified; `fail_delete` simulates a crash."""

from __future__ import annotations

from datetime import UTC, datetime

from shared.adapters.storage import ObjectInfo

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


class MemoryStore:
    def __init__(self, clock=lambda: EPOCH):
        self.objects: dict[str, tuple[bytes, datetime]] = {}
        self.clock = clock
        self.fail_delete = 0

    async def put(self, key, data):
        self.objects[key] = (bytes(data), self.clock())

    async def get(self, key):
        if key not in self.objects:
            raise FileNotFoundError(key)
        return self.objects[key][0]

    async def get_head(self, key, length):
        return (await self.get(key))[:length]

    async def exists(self, key):
        return key in self.objects

    async def delete(self, key):
        if self.fail_delete:
            self.fail_delete -= 1
            raise SystemExit("crash")  # a process dying mid-deletion
        self.objects.pop(key, None)

    async def delete_older_versions(self, key):
        pass  # one version per key

    async def list(self, prefix=""):
        return [ObjectInfo(k, len(v[0]), v[1]) for k, v in sorted(self.objects.items()) if k.startswith(prefix)]

    async def ping(self):
        return True
