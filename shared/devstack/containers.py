"""`FS_TEST_INFRA=containers`: the same stack with PostgreSQL, Apache Kafka and MinIO in containers
(testcontainers) instead of the embedded servers, for users who have a Docker engine. The services
still run as local processes, exactly as on the embedded path (shared.devstack.embedded.running_stack).

Not runnable on the development machine (no Docker engine); install with
`uv sync --group containers`. Tests that kill and restart a server (tests/integration/test_recovery.py)
need the embedded servers.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

IMAGES = {"postgres": "postgres:18", "kafka": "apache/kafka:3.9.1", "minio": "minio/minio:latest"}


@contextmanager
def container_servers() -> Iterator[dict[str, str]]:
    """Start the three servers; yields the FS_* values that point the services at them."""
    from testcontainers.community.kafka import KafkaContainer
    from testcontainers.community.minio import MinioContainer
    from testcontainers.community.postgres import PostgresContainer

    with ExitStack() as running:
        postgres = running.enter_context(PostgresContainer(IMAGES["postgres"], driver=None))
        kafka = running.enter_context(KafkaContainer(IMAGES["kafka"]).with_kraft())
        minio = running.enter_context(MinioContainer(IMAGES["minio"]))
        s3 = minio.get_config()
        yield {
            "FS_DATABASE_URL": postgres.get_connection_url(),
            "FS_KAFKA_BOOTSTRAP": kafka.get_bootstrap_server(),
            "FS_KAFKA_ENABLE_IDEMPOTENCE": "true",  # Apache Kafka has InitProducerId
            "FS_KAFKA_FETCH_WAIT_MS": "500",  # and answers a long poll when a record arrives
            "FS_S3_ENDPOINT": s3["endpoint"],
            "FS_S3_ACCESS_KEY": s3["access_key"],
            "FS_S3_SECRET_KEY": s3["secret_key"],
        }
