"""`make run`: the embedded stack and the five services, supervised until SIGTERM or SIGINT."""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path


def run() -> int:
    from shared.devstack.broker_memory import LauncherMetrics, stack_recycler
    from shared.devstack.embedded import EmbeddedStack, default_env
    from shared.devstack.liveness import stack_liveness
    from shared.devstack.supervisor import Supervisor
    from shared.runtime.logs import setup_logging
    from shared.settings import LAUNCHER_METRICS_PORT_OFFSET, Settings

    setup_logging("stack")
    log = logging.getLogger("fileshare.stack")
    data_dir = Path(os.environ.get("FS_DATA_DIR", ".data")).resolve()
    env = default_env(data_dir)
    stack = EmbeddedStack(data_dir, env)
    metrics = LauncherMetrics()
    stopping = {"flag": False}

    def on_signal(signum, _frame):
        stopping["flag"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        start_everything(stack, env, data_dir)
        settings = Settings(**{k[3:].lower(): v for k, v in env.items() if k.startswith("FS_")})
        metrics.serve(settings.bind_host, settings.metrics_port_base + LAUNCHER_METRICS_PORT_OFFSET)
        supervisor = Supervisor(
            stack.restarters(),
            stack.procs,
            stack.reap,
            liveness=stack_liveness(stack, settings.liveness_seconds),
            recycler=stack_recycler(stack, settings, metrics),
        )
        code = supervisor.run(lambda: stopping["flag"])
        if supervisor.gave_up:
            log.error("see %s", stack.log_dir / f"{supervisor.gave_up}.log")
        return code
    except Exception as e:
        log.error("%s", e)
        return 1
    finally:
        log.info("stopping")
        metrics.stop()
        stack.stop()
        log.info("stopped")


def start_everything(stack, env: dict, data_dir: Path) -> None:
    """The servers, then the services, each ready before the next (a failure raises)."""
    from shared.devstack.embedded import SERVICES
    from shared.devstack.embedded_clamd import prepare_for_run

    log = logging.getLogger("fileshare.stack")
    # Before any server starts: a missing scanner stops the run with the command to type.
    signatures = (
        None
        if env.get("FS_CLAMD")
        else prepare_for_run(Path(env.get("FS_CLAMAV_DB_DIR", "/var/lib/clamav")), data_dir / "clamav")
    )
    stack.start_s3()
    log.info("object storage ready: rclone serve s3 on %s (data in %s)", env["FS_S3_ENDPOINT"], data_dir / "s3")
    if "FS_DATABASE_URL" in os.environ:
        log.info("database: using FS_DATABASE_URL from the environment")
    else:
        stack.start_postgres()
        log.info(
            "database ready: PostgreSQL on %s (data in %s)",
            env["FS_DATABASE_URL"].rsplit("@", 1)[-1],
            data_dir / "postgres",
        )
    stack.start_kafka()
    log.info(
        "kafka ready: tansu on %s (transport: its log is in memory; state lives in the database)",
        env["FS_KAFKA_BOOTSTRAP"],
    )
    if env.get("FS_CLAMD"):
        log.info("malware scanner: FS_CLAMD=%s", env["FS_CLAMD"])
    elif stack.start_clamd(signatures):
        log.info("malware scanner ready: clamd on %s", stack.env["FS_CLAMD"])
    else:  # it warned why; only FS_CLAMD=disabled turns scanning off
        raise RuntimeError(f"clamd did not start with the signatures in {signatures}")
    for name in SERVICES:
        stack.start_service(name)
    for name in SERVICES:
        stack.wait_ready(name, timeout=120)
        log.info("%s ready", name)
    log.info(
        "all services ready: upload http://127.0.0.1:%s  delivery http://127.0.0.1:%s  (logs in %s)",
        env["FS_UPLOAD_PORT"],
        env["FS_DELIVERY_PORT"],
        stack.log_dir,
    )
