"""A bot that answers by sending a photo, after LivePerson's "File Sharing Bot" example
(node-agent-sdk, examples/file-sharing-bot): there the bot joins each new conversation and
shares an image with the consumer. Here it watches `conversation.events` and, for every
conversation opened in its account on a channel that receives files, sends a photo with a
caption through the upload API (or, with --via kafka, as a record on file.share.requested).

    fileshare token --account acct-1 --role bot --sub welcome-bot > /tmp/bot.jwt
    python examples/file_sharing_bot.py --account acct-1 --token "$(cat /tmp/bot.jwt)" \
        --photo examples/welcome.png --caption "Hi! Here is our store map."

The account needs the feature on (account team), file sharing on, and `send_files_local`
in the `bot` profile (PUT /v1/accounts/{acct}/settings).
"""
from __future__ import annotations

import argparse
import asyncio
import io
import json
import logging
import os
from pathlib import Path

from aiokafka import AIOKafkaConsumer

from shared.sdk import FileSharingClient, FileSharingError, publish_file_request_async

log = logging.getLogger("file-sharing-bot")


def default_photo() -> bytes:
    from PIL import Image, ImageDraw
    img = Image.new("RGB", (640, 400), (30, 110, 200))
    ImageDraw.Draw(img).text((40, 180), "Hello from the file sharing bot", fill=(255, 255, 255))
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


async def answer(args, photo: bytes, conversation_id: str) -> None:
    if args.via == "kafka":
        request_id = await publish_file_request_async(args.kafka, args.token, args.account, conversation_id,
                                                      photo, args.caption)
        log.info("requested %s for conversation %s", request_id, conversation_id)
        return
    client = FileSharingClient(args.upload_url, args.token)
    try:
        status = await asyncio.to_thread(client.send_file, args.account, conversation_id, photo,
                                         caption=args.caption, wait=True)
        log.info("sent %s to conversation %s: %s", status["file_id"], conversation_id, status["status"])
    except FileSharingError as e:  # e.g. conversation_closed, permission_denied: log and keep serving
        log.warning("could not send to %s: %s", conversation_id, e)


async def run(args) -> None:
    photo = Path(args.photo).read_bytes() if args.photo else default_photo()
    consumer = AIOKafkaConsumer("conversation.events", bootstrap_servers=args.kafka, group_id=args.group,
                                auto_offset_reset="earliest" if args.from_beginning else "latest", enable_auto_commit=True)
    await consumer.start()
    log.info("waiting for conversations of account %s", args.account)
    try:
        async for record in consumer:
            try:
                event = json.loads(record.value)
            except ValueError:
                continue
            if (event.get("event_type") == "conversation.opened" and event.get("account_id") == args.account
                    and event.get("channel") in args.channels.split(",")):
                await answer(args, photo, event["conversation_id"])
    finally:
        await consumer.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--account", required=True)
    p.add_argument("--token", default=os.environ.get("FS_BOT_TOKEN"), help="the bot's bearer token")
    p.add_argument("--photo", help="jpeg/png/gif to send (default: a generated picture)")
    p.add_argument("--caption", default="Here is a photo for you")
    p.add_argument("--upload-url", default=f"http://127.0.0.1:{os.environ.get('FS_UPLOAD_PORT', '8080')}")
    p.add_argument("--kafka", default=os.environ.get("FS_KAFKA_BOOTSTRAP", "127.0.0.1:9092"))
    p.add_argument("--via", choices=("http", "kafka"), default="http")
    p.add_argument("--channels", default="web")
    p.add_argument("--group", default="example-file-sharing-bot")
    p.add_argument("--from-beginning", action="store_true",
                   help="a new group also answers conversations opened before the bot started")
    args = p.parse_args()
    if not args.token:
        p.error("--token or FS_BOT_TOKEN is required")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
