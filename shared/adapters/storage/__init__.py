from shared.adapters.storage.keys import VARIANTS, ObjectKey, consumer_prefix, object_key
from shared.adapters.storage.objectstore import ObjectInfo, ObjectStore, S3ObjectStore, StorageUnavailable

__all__ = [
    "VARIANTS",
    "ObjectKey",
    "consumer_prefix",
    "object_key",
    "ObjectInfo",
    "ObjectStore",
    "S3ObjectStore",
    "StorageUnavailable",
]
