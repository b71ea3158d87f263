"""`fileshare run` restarts its embedded broker in a quiet moment once it passes
FS_EMBEDDED_BROKER_MAX_MB (here 1 MB: at the first quiet moment), and nothing is lost: photos sent
before and after are each published once, and a platform follower that ran throughout receives
every message once."""

from __future__ import annotations

import signal

from services.delivery.handlers import message_id_for
from tests.integration.test_recovery import assert_each_once_in_transcripts, conversations, send
from tests.launcher import (
    all_ready,
    client_of,
    component,
    launched,
    launcher_metrics,
    restarted,
    run_env,
    wait_all_ready,
)
from tests.support import FollowerThread, unique, wait_until

RECYCLE_LINE = "and every consumer group is caught up: restarting it to free its memory"


def test_the_broker_is_recycled_when_quiet_and_no_photo_is_lost_or_sent_twice(tmp_path):
    env = run_env(tmp_path, FS_EMBEDDED_BROKER_MAX_MB="1", FS_REDRIVE_SECONDS="5")
    log_path = tmp_path / "run.log"
    with launched(env, log_path) as proc:
        wait_all_ready(proc, log_path, env)
        assert launcher_metrics(env)["fileshare_embedded_broker_resident_bytes"] > 0
        follower = FollowerThread(env["FS_KAFKA_BOOTSTRAP"])
        follower.start()
        client = client_of(env)
        account = unique("acct")
        client.enable_account(account)
        convs = conversations(client, account, 3)
        before = send(client, account, convs, 4)
        client.wait_published(account, before)

        broker = component(proc.pid, "kafka").pid
        wait_until(
            lambda: proc.poll() is not None or restarted(proc.pid, "kafka", broker),
            timeout=120,
            interval=0.5,
            what="the broker to be recycled once quiet",
        )
        assert proc.poll() is None, log_path.read_text()[-3000:]
        assert RECYCLE_LINE in log_path.read_text()
        assert "kafka exited" not in log_path.read_text()  # a deliberate restart, not a crash
        wait_until(lambda: all_ready(env), timeout=120, interval=0.5, what="the stack ready after the recycle")

        after = send(client, account, convs, 4)
        client.wait_published(account, after)
        sent = {**before, **after}
        assert_each_once_in_transcripts(client, account, sent)
        wanted = {message_id_for(f) for f in sent}
        wait_until(
            lambda: wanted <= set(follower.received),
            timeout=120,
            interval=0.5,
            what="the follower received every message",
        )
        assert len(follower.received) == len(set(follower.received))  # never one message twice
        assert launcher_metrics(env)["fileshare_embedded_broker_recycles_total"] >= 1
        follower.stopping.set()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 0
