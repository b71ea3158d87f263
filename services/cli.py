"""`fileshare`: the operator and developer command line.

fileshare run                      start the embedded stack and the five services (make run; development only)
fileshare token --account A --role agent --sub agent-1
fileshare open agent|consumer --account A --conversation C [--conversation C2] [--sub S]
fileshare forget --account A --consumer C
fileshare conversation opened --account A --conversation C1 --consumer U1 [--channel web]
fileshare retention status         stored files per account, oldest file age, next expiry
fileshare keys status              consumer keys per master key id (exit 0: none under a former key)
fileshare keys rotate [--batch-size N] [--max-batches N]
                                   re-wrap every consumer key under FS_MASTER_KEY (docs/key-rotation.md)
fileshare schemas [--write DIR]    JSON Schema of every event; --write: the OpenAPI of both HTTP APIs
                                   and the AsyncAPI of the topics into DIR (docs/reference)
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import signal
import sys
import uuid
from datetime import UTC
from pathlib import Path
from typing import Any, cast

from shared.contract.auth import mint_token
from shared.contract.events import ROLES
from shared.contract.ids import InvalidId, check_id
from shared.settings import Settings


def _id(value: str) -> str:
    """An id argument: refused with the rule when it is not of that shape."""
    try:
        return check_id(value, "the id")
    except InvalidId as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _auth_secret() -> str:
    secret = os.environ.get("FS_AUTH_SECRET")
    if not secret:
        from shared.runtime.stack_secrets import load_or_create_secrets

        secret = load_or_create_secrets(Path(os.environ.get("FS_DATA_DIR", ".data")))["FS_AUTH_SECRET"]
    return secret


def _settings():
    """The settings of a command run beside `make run`: FS_* from the environment, the database of
    the embedded stack when FS_DATABASE_URL is not set."""
    from shared.settings import Settings

    settings = Settings()
    if not settings.database_url:
        from shared.runtime.stack_secrets import embedded_database_url, load_or_create_secrets

        password = load_or_create_secrets(settings.data_dir)["FS_DATABASE_PASSWORD"]
        settings = settings.model_copy(
            update={"database_url": embedded_database_url(password, settings.embedded_database_port)}
        )
    return settings


def _stack_settings():
    """_settings() with the secrets `make run` keeps in FS_DATA_DIR/secrets.env (master keys, S3
    credentials) wherever the environment does not set them; reads the file, never writes it."""
    from shared.runtime.stack_secrets import read_secrets

    settings = _settings()
    stored = read_secrets(settings.data_dir)
    names = ("FS_MASTER_KEY", "FS_PREVIOUS_MASTER_KEYS", "FS_S3_ACCESS_KEY", "FS_S3_SECRET_KEY")
    return settings.model_copy(
        update={n[3:].lower(): stored[n] for n in names if n not in os.environ and stored.get(n)}
    )


def _key_store(settings: Settings):
    from shared.runtime.wiring import build_storage

    try:
        return build_storage(settings).keys
    except ValueError as e:  # no FS_MASTER_KEY, or a key that is not base64 of 32 bytes
        raise SystemExit(f"fileshare keys: {e}") from None


def cmd_keys_status(args) -> int:
    from shared.adapters.key_rotation import key_status
    from shared.runtime.logs import setup_logging

    setup_logging("cli", "WARNING")
    status = asyncio.run(key_status(_key_store(_stack_settings())))
    print(json.dumps(status, indent=2))
    return 0 if status["under_other_master_keys"] == 0 else 1


def cmd_keys_rotate(args) -> int:
    from services.retention.forgets import ForgetLedger
    from shared.adapters.key_rotation import rotate
    from shared.runtime.logs import setup_logging

    setup_logging("cli", "WARNING")
    settings = _stack_settings()
    keys = _key_store(settings)

    async def run():
        stop = asyncio.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):  # stop after the batch in hand, never inside it
            asyncio.get_running_loop().add_signal_handler(signum, stop.set)
        async with ForgetLedger(settings.database_url) as forgets:
            return await rotate(
                keys, forgets, args.batch_size, args.max_batches, lambda line: print(line, flush=True), stop
            )

    print(f"re-wrapping consumer keys under master key {keys.current_master_key_id}", flush=True)
    progress = asyncio.run(run())
    print(progress.line(), flush=True)
    if progress.complete:
        print(
            "done: no consumer key is under a former master key. Confirm with `fileshare keys status`, "
            "then remove the former key (FS_PREVIOUS_MASTER_KEYS) and restart the services."
        )
        return 0
    if progress.stopped_early:
        print("stopped before the end: run `fileshare keys rotate` again to finish (keys done are skipped)")
    if progress.skipped:
        print(
            f"{progress.skipped} keys of consumers being forgotten were left to their forget: run again once it is done"
        )
    if progress.unknown:
        print("some keys are wrapped by a master key this command was not given: add it to FS_PREVIOUS_MASTER_KEYS")
    return 1


def cmd_token(args) -> int:
    print(mint_token(_auth_secret(), args.account, args.role, args.sub, args.ttl))
    return 0


def cmd_open(args) -> int:
    from shared.runtime.webpages import page_url
    from shared.settings import Settings

    settings = Settings()
    base, role = (
        (settings.public_upload_url, "agent") if args.page == "agent" else (settings.public_delivery_url, "consumer")
    )
    token = mint_token(_auth_secret(), args.account, role, args.sub or f"{role}-1", args.ttl)
    print(page_url(base, args.page, token, args.account, args.conversation))
    return 0


def cmd_schemas(args) -> int:
    if args.write:
        from services.reference import write_reference

        for path in write_reference(Path(args.write)):
            print(path)
        return 0
    from shared.contract.events import json_schemas

    print(json.dumps(json_schemas(), indent=2))
    return 0


def _publish(topic: str, key: str, event) -> None:
    from shared.adapters.kafka import Outgoing, make_producer, send_all
    from shared.settings import get_settings

    async def publish():
        producer = make_producer(get_settings())
        await producer.start()
        try:
            await send_all(producer, [Outgoing(topic, key, event)])
        finally:
            await producer.stop()

    asyncio.run(publish())


def cmd_conversation(args) -> int:
    """Stand in for the messaging platform during development."""
    from shared.contract.events import ConversationEvent
    from shared.contract.topics import CONVERSATION_EVENTS

    event = ConversationEvent(
        event_type=cast(Any, f"conversation.{args.state}"),  # argparse choices keep it to the Literal
        account_id=args.account,
        conversation_id=args.conversation,
        consumer_id=args.consumer,
        channel=args.channel,
        authenticated=args.authenticated,
    )
    _publish(CONVERSATION_EVENTS, args.conversation, event)
    print(event.model_dump_json())
    return 0


def cmd_forget(args) -> int:
    from shared.contract.events import GdprForget
    from shared.contract.topics import GDPR_FORGET

    request = GdprForget(
        request_id=args.request_id or str(uuid.uuid4()), account_id=args.account, consumer_id=args.consumer
    )
    _publish(GDPR_FORGET, request.consumer_id, request)
    print(json.dumps({"request_id": request.request_id, "status": "published"}))
    return 0


def cmd_retention_status(args) -> int:
    from datetime import datetime

    from services.retention.status import load_status
    from shared.runtime.logs import setup_logging

    setup_logging("cli", "WARNING")
    print(json.dumps(asyncio.run(load_status(_settings(), datetime.now(UTC))), indent=2))
    return 0


def cmd_run(args) -> int:
    """The development stack lives in shared.devstack, which the production wheel and image leave
    out: the command hands this process over to it (same pid, same signals) when it is installed."""
    if importlib.util.find_spec("shared.devstack") is None:
        print(
            "fileshare run: the development stack (shared/devstack) is not installed here; "
            "run `make run` from a checkout",
            file=sys.stderr,
        )
        return 2
    os.execv(sys.executable, [sys.executable, "-m", "shared.devstack", "run"])


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="fileshare", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("token", help="mint a development bearer token with FS_AUTH_SECRET")
    p.add_argument("--account", type=_id, required=True)
    p.add_argument("--role", required=True, choices=ROLES)
    p.add_argument("--sub", type=_id, required=True, help="user id (the consumer id for role consumer)")
    p.add_argument("--ttl", type=int, default=3600, help="seconds (default 3600)")
    p.set_defaults(fn=cmd_token)
    p = sub.add_parser(
        "open",
        help="print the address of the agent workspace or the consumer view, with a fresh "
        "development token in its fragment",
    )
    p.add_argument("page", choices=["agent", "consumer"])
    p.add_argument("--account", type=_id, required=True)
    p.add_argument(
        "--conversation",
        type=_id,
        required=True,
        action="append",
        help="repeat to list several conversations in the agent workspace",
    )
    p.add_argument(
        "--sub", type=_id, help="user id (the consumer id for the consumer view); default agent-1 / consumer-1"
    )
    p.add_argument("--ttl", type=int, default=8 * 3600, help="token lifetime in seconds (default 8 hours)")
    p.set_defaults(fn=cmd_open)
    p = sub.add_parser("forget", help="publish a right-to-be-forgotten request (gdpr.forget)")
    p.add_argument("--account", type=_id, required=True)
    p.add_argument("--consumer", type=_id, required=True)
    p.add_argument("--request-id", type=_id)
    p.set_defaults(fn=cmd_forget)
    p = sub.add_parser("conversation", help="publish a conversation event (stands in for the messaging platform)")
    p.add_argument("state", choices=["opened", "closed", "resumed"])
    p.add_argument("--account", type=_id, required=True)
    p.add_argument("--conversation", type=_id, required=True)
    p.add_argument("--consumer", type=_id, required=True)
    p.add_argument("--channel", default="web")
    p.add_argument("--authenticated", action="store_true")
    p.set_defaults(fn=cmd_conversation)
    p = sub.add_parser("retention", help="retention operations")
    retention = p.add_subparsers(dest="retention_command", required=True)
    retention.add_parser(
        "status",
        help="stored files per account, oldest file age, next expiry (JSON), from "
        "retention's file index in the database",
    ).set_defaults(fn=cmd_retention_status)
    p = sub.add_parser("keys", help="master-key rotation (docs/key-rotation.md)")
    keys = p.add_subparsers(dest="keys_command", required=True)
    keys.add_parser(
        "status",
        help="how many consumer keys each master key id wraps (JSON); exit 0 when none is "
        "under another than FS_MASTER_KEY",
    ).set_defaults(fn=cmd_keys_status)
    p = keys.add_parser(
        "rotate",
        help="re-wrap every consumer key under FS_MASTER_KEY (the services running with "
        "the former key in FS_PREVIOUS_MASTER_KEYS); online, resumable; exit 0 when done",
    )
    p.add_argument("--batch-size", type=_positive, default=100, help="keys per batch (default 100)")
    p.add_argument("--max-batches", type=_positive, help="stop after this many batches (run again to go on)")
    p.set_defaults(fn=cmd_keys_rotate)
    p = sub.add_parser("schemas", help="print the JSON Schema of every event")
    p.add_argument(
        "--write",
        metavar="DIR",
        help="write openapi-upload.json, openapi-delivery.json and "
        "asyncapi.yaml into DIR (the project's docs/reference)",
    )
    p.set_defaults(fn=cmd_schemas)
    sub.add_parser("run", help="start the embedded stack and the five services").set_defaults(fn=cmd_run)
    args = parser.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
