"""`fileshare run` replaces a component that stops answering (SIGSTOP stands in for a stuck
database, a wedged broker, a deadlocked service) within FS_LIVENESS_SECONDS + 10 s, and the system
ends ready and delivers photos again."""

from __future__ import annotations

import signal

from tests import imagecorpus as corpus
from tests.launcher import all_ready, client_of, launched, pause, restarted, run_env, wait_all_ready
from tests.support import unique, wait_until

LIVENESS_SECONDS = 5


def test_a_stopped_service_database_and_broker_are_each_replaced_and_the_stack_ends_ready(tmp_path):
    env = run_env(tmp_path, FS_LIVENESS_SECONDS=str(LIVENESS_SECONDS), FS_REDRIVE_SECONDS="5")
    log_path = tmp_path / "run.log"
    with launched(env, log_path) as proc:
        wait_all_ready(proc, log_path, env)
        for name in ("delivery", "postgres", "kafka"):
            stopped = pause(proc.pid, name)
            wait_until(
                lambda: proc.poll() is not None or restarted(proc.pid, name, stopped.pid),
                timeout=LIVENESS_SECONDS + 10,
                interval=0.2,
                what=f"the stopped {name} to be replaced",
            )
            assert proc.poll() is None, log_path.read_text()[-3000:]
            assert f"{name} has not answered its liveness check for" in log_path.read_text()
            assert not stopped.is_running()  # killed, not left stopped beside the new one
            wait_until(lambda: all_ready(env), timeout=120, interval=0.5, what=f"the stack to be ready after {name}")

        client = client_of(env)
        account, conversation = unique("acct"), unique("conv")
        client.enable_account(account)
        client.open_conversation(account, conversation, unique("consumer"))
        file_id = client.upload(account, conversation, corpus.to_jpeg(corpus.photo(640, 480, seed=1))).json()["file_id"]
        assert client.wait_status(file_id, account, timeout=120)["status"] == "published"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 0
