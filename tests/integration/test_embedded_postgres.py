"""The embedded PostgreSQL starts again after a SIGKILL when a parent of its data folder was closed
to other users meanwhile (pytest does that to /tmp/pytest-of-<user> at each session's start): run as
root, the server runs as an unprivileged user that must traverse every parent."""

from __future__ import annotations

import signal

import psycopg

from shared.devstack.embedded import EmbeddedStack, embedded_database_url, free_port, load_or_create_secrets


# Started by root, the server runs as another user, which a closed parent folder locks out; the
# launcher opens the way again. Started by anyone else it runs as that user: the restart must work too.
def test_postgres_restarts_after_a_parent_of_its_data_folder_was_closed(tmp_path):
    data_dir = tmp_path / "data"
    password = load_or_create_secrets(data_dir)["FS_DATABASE_PASSWORD"]
    stack = EmbeddedStack(data_dir, {"FS_DATABASE_URL": embedded_database_url(password, free_port())})
    stack.start_postgres()
    try:
        stack.stop_process("postgres", signal.SIGKILL)
        tmp_path.chmod(0o700)
        stack.start_postgres()
        with psycopg.connect(stack.env["FS_DATABASE_URL"], connect_timeout=5) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        stack.stop()
