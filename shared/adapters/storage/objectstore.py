"""Object-store port and its S3 implementation (minio client).

Vendor errors are translated here: a missing object is FileNotFoundError, an
unreachable server is StorageUnavailable (transient: callers retry).
Every HTTP request the client sends is counted (`fileshare_storage_requests_total{bucket, op}`), at
the HTTP layer so its own requests (a region lookup, a delete's version listing) count too; urllib3's
retries of one request (a 5xx, a dropped connection) count once.
"""

from __future__ import annotations

import asyncio
import contextvars
import io
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import urllib3
from minio import Minio
from minio.error import InvalidResponseError, S3Error
from minio.helpers import MIN_PART_SIZE

from shared.settings import Settings

_log = logging.getLogger(__name__)


class StorageUnavailable(ConnectionError):
    """The object store did not answer; the operation may succeed later."""


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    last_modified: datetime | None


class ObjectStore(Protocol):
    async def put(self, key: str, data: bytes) -> None: ...
    async def get(self, key: str) -> bytes: ...
    async def get_head(self, key: str, length: int) -> bytes: ...
    async def exists(self, key: str) -> bool: ...
    async def delete(self, key: str) -> None: ...
    async def delete_older_versions(self, key: str) -> None: ...
    async def list(self, prefix: str = "") -> list[ObjectInfo]: ...
    async def ping(self) -> bool: ...


_NOT_FOUND = {"NoSuchKey", "NoSuchObject", "NoSuchVersion"}
# The adapter operation an HTTP request belongs to (set in the worker thread that makes it).
_op: contextvars.ContextVar[str] = contextvars.ContextVar("fileshare_storage_op", default="other")


class _CountingPool(urllib3.PoolManager):
    """Counts each request the minio client sends, labelled with the adapter operation."""

    def __init__(self, count, **kwargs):
        super().__init__(**kwargs)
        self._count = count

    # PoolManager.urlopen itself narrows RequestMethods.urlopen; this keeps its signature.
    def urlopen(self, method: str, url: str, redirect: bool = True, **kw: Any) -> Any:  # type: ignore[override]
        self._count(_op.get())
        return super().urlopen(method, url, redirect, **kw)


def _status_and_body(e: InvalidResponseError) -> tuple[int, str]:
    """minio keeps an unparsed answer's status and body private; its pickling protocol hands out the
    arguments the error was built with (code, content type, body)."""
    _, (status, _content_type, body) = e.__reduce__()
    return status, body or ""


class S3ObjectStore:
    """One bucket of an S3-compatible server (MinIO in production, rclone serve s3 embedded)."""

    def __init__(
        self, endpoint: str, access_key: str, secret_key: str, bucket: str, secure: bool = False, requests=None
    ):
        """requests: a Counter labelled (bucket, op), or None."""
        self.bucket, self.endpoint = bucket, endpoint
        count = (lambda op: requests.labels(bucket, op).inc()) if requests is not None else (lambda op: None)
        http = _CountingPool(
            count,
            timeout=urllib3.Timeout(connect=3, read=30),
            maxsize=16,
            retries=urllib3.Retry(total=2, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]),
        )
        self._client = Minio(endpoint, access_key=access_key, secret_key=secret_key, secure=secure, http_client=http)

    @classmethod
    def from_settings(cls, settings: Settings, bucket: str | None = None, requests=None) -> S3ObjectStore:
        return cls(
            settings.s3_endpoint,
            settings.s3_access_key,
            settings.s3_secret_key,
            bucket or settings.s3_bucket,
            settings.s3_secure,
            requests,
        )

    async def _call(self, op: str, fn, *args, **kwargs):
        def labelled():
            _op.set(op)  # to_thread runs this in a copy of the context: nothing leaks to the caller
            return fn(*args, **kwargs)

        try:
            return await asyncio.to_thread(labelled)
        except S3Error as e:
            if e.code in _NOT_FOUND:
                raise FileNotFoundError(kwargs.get("object_name") or (args[1] if len(args) > 1 else "")) from e
            raise
        except InvalidResponseError as e:
            # rclone serve s3 answers errors as text/xml, which minio does not parse: read the status.
            status, body = _status_and_body(e)
            if status == 404 and any(code in body for code in _NOT_FOUND):
                raise FileNotFoundError(kwargs.get("object_name") or (args[1] if len(args) > 1 else "")) from e
            if status >= 500:
                raise StorageUnavailable(f"object store {self.endpoint}: HTTP {status}") from e
            raise
        except (urllib3.exceptions.HTTPError, OSError) as e:
            if isinstance(e, FileNotFoundError):
                raise
            raise StorageUnavailable(f"object store {self.endpoint}: {e}") from e

    async def ensure_bucket(self) -> None:
        if not await self._call("ensure_bucket", self._client.bucket_exists, self.bucket):
            try:
                await self._call("ensure_bucket", self._client.make_bucket, self.bucket)
            except S3Error as e:
                if e.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise

    async def put(self, key: str, data: bytes) -> None:
        # A single PUT is atomic on S3: readers see the old object or the whole new one. The part size is
        # the blob's own, so the client never turns a 5 MB photo (over its 5 MiB part) into a multipart
        # upload: not atomic, and parts sent from the client's own threads would escape the count.
        await self._call(
            "put",
            self._client.put_object,
            self.bucket,
            key,
            io.BytesIO(data),
            len(data),
            content_type="application/octet-stream",
            part_size=max(len(data), MIN_PART_SIZE),
        )

    async def get(self, key: str) -> bytes:
        return await self._read("get", key)

    async def get_head(self, key: str, length: int) -> bytes:
        """The first `length` bytes (all of a shorter object), in one ranged GET: what a check of the
        blob's header needs, without transferring its body."""
        return await self._read("get_head", key, length=length)

    async def _read(self, op: str, key: str, **kwargs) -> bytes:
        def read():
            resp = self._client.get_object(self.bucket, key, **kwargs)
            try:
                return resp.read()
            finally:
                resp.close()
                resp.release_conn()

        try:
            return await self._call(op, read)
        except FileNotFoundError:
            raise FileNotFoundError(key) from None

    async def exists(self, key: str) -> bool:
        try:
            await self._call("stat", self._client.stat_object, self.bucket, key)
            return True
        except FileNotFoundError:
            return False

    async def delete(self, key: str) -> None:
        """Delete the object and, on versioned buckets (MinIO), every version of it."""

        def remove_all_versions():
            try:
                self._client.remove_object(self.bucket, key)
            except (S3Error, InvalidResponseError) as e:
                if not (getattr(e, "code", None) in _NOT_FOUND or getattr(e, "_code", None) == 404):
                    raise  # deleting what is already gone is fine
            try:
                versions = [
                    o
                    for o in self._client.list_objects(self.bucket, prefix=key, include_version=True)
                    if o.object_name == key and o.version_id not in (None, "null")
                ]
            except (S3Error, InvalidResponseError):
                versions = []  # servers without versioning support (rclone answers 501)
            for o in versions:
                self._client.remove_object(self.bucket, key, version_id=o.version_id)

        await self._call("delete", remove_all_versions)

    async def delete_older_versions(self, key: str) -> None:
        """On a versioned bucket (MinIO), every version of the object but the latest: what an overwrite
        must not leave behind (a consumer key under a retired master key). A no-op elsewhere."""

        def remove_noncurrent():
            try:
                versions = [
                    o
                    for o in self._client.list_objects(self.bucket, prefix=key, include_version=True)
                    if o.object_name == key
                    and o.version_id not in (None, "null")
                    and str(o.is_latest).lower() != "true"
                ]
            except (S3Error, InvalidResponseError):
                return  # servers without versioning support (rclone answers 501)
            for o in versions:
                self._client.remove_object(self.bucket, key, version_id=o.version_id)

        await self._call("delete", remove_noncurrent)

    async def list(self, prefix: str = "") -> list[ObjectInfo]:
        def collect():
            return [
                ObjectInfo(o.object_name, o.size or 0, o.last_modified)
                for o in self._client.list_objects(self.bucket, prefix=prefix, recursive=True)
                if not o.is_dir
            ]

        return await self._call("list", collect)

    async def set_expiry_days(self, days: int, rule_id: str = "fileshare-retention-safety-net") -> bool:
        """Bucket lifecycle rule: objects older than `days` expire, and versions hidden behind a
        delete marker (versioned MinIO buckets) go one day after they became noncurrent.
        Returns False when the server has no lifecycle support (rclone serve s3): a no-op there."""
        from minio.commonconfig import ENABLED, Filter
        from minio.lifecycleconfig import Expiration, LifecycleConfig, NoncurrentVersionExpiration, Rule

        config = LifecycleConfig(
            [
                Rule(
                    ENABLED,
                    rule_filter=Filter(prefix=""),
                    rule_id=rule_id,
                    expiration=Expiration(days=days),
                    noncurrent_version_expiration=NoncurrentVersionExpiration(noncurrent_days=1),
                )
            ]
        )
        try:
            await self._call("lifecycle", self._client.set_bucket_lifecycle, self.bucket, config)
            return True
        except (S3Error, InvalidResponseError) as e:
            # rclone has no lifecycle API (it answers 409 without an S3 error body): a no-op there.
            _log.info("bucket %s: lifecycle rule not applied (%s)", self.bucket, str(e).splitlines()[0])
            return False

    async def ping(self) -> bool:
        try:
            return bool(await self._call("ping", self._client.bucket_exists, self.bucket))
        except Exception:
            return False
