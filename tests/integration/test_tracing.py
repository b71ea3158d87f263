"""One photo is one trace: its upload, each stage's handling and its download, exported by the five
service processes over OTLP (configured by OTEL_* alone) to a receiver in the test, all in one
trace, each span the child of the step before; a bot's traceparent on file.share.requested is
continued, and so is an HTTP caller's (the SDK sends its own); no caption or file name in any
exported byte. A forget request is a span of its sender's trace that names no consumer."""

from __future__ import annotations

import asyncio
import gzip
import itertools
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from opentelemetry import context, propagate
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from shared.contract.events import GdprForget
from shared.contract.topics import FILE_SHARE_REQUESTED, GDPR_FORGET
from shared.devstack.embedded import running_stack
from shared.sdk import FileSharingClient
from tests.integration.test_walking_skeleton import camera_photo
from tests.support import Client, unique, wait_until
from tests.uploadsupport import bot_outcomes, png_bytes, share_request

CAPTION = "a caption nobody may trace"
FILENAME = "private-holiday-name.jpg"
BOT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
UPLOAD = "POST /v1/accounts/{account_id}/conversations/{conversation_id}/files"
DOWNLOAD = "GET /v1/files/{file_id}/content"
STAGES = {
    "sanitize file.uploaded": "fileshare-sanitizer",
    "resize file.sanitized": "fileshare-resizer",
    "deliver file.resized": "fileshare-delivery",
}


class OtlpReceiver(ThreadingHTTPServer):
    """What an OpenTelemetry collector receives on OTLP/HTTP (protobuf): every span, flattened."""

    def __init__(self):
        self.spans: list[dict] = []
        self.bodies: list[bytes] = []
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _OtlpHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def received(self, request: ExportTraceServiceRequest, body: bytes) -> None:
        spans = []
        for resource_spans in request.resource_spans:
            service = attributes_of(resource_spans.resource.attributes).get("service.name")
            for scope in resource_spans.scope_spans:
                spans += [
                    {
                        "service": service,
                        "name": s.name,
                        "trace_id": s.trace_id.hex(),
                        "span_id": s.span_id.hex(),
                        "parent": s.parent_span_id.hex() or None,
                        "attributes": attributes_of(s.attributes),
                        "links": [link.trace_id.hex() for link in s.links],
                    }
                    for s in scope.spans
                ]
        with self.lock:
            self.spans += spans
            self.bodies.append(body)

    def trace_of(self, trace_id: str) -> dict[str, dict]:
        with self.lock:
            return {s["name"]: s for s in self.spans if s["trace_id"] == trace_id}

    def span_named(self, name: str, file_id: str) -> dict | None:
        with self.lock:
            return next(
                (s for s in self.spans if s["name"] == name and s["attributes"].get("file_id") == file_id), None
            )


class _OtlpHandler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        self.server.received(request, body)
        answer = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


def attributes_of(attributes) -> dict:
    return {a.key: getattr(a.value, a.value.WhichOneof("value")) for a in attributes}


@pytest.fixture(scope="module")
def receiver():
    server = OtlpReceiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()


@pytest.fixture(scope="module")
def client(tmp_path_factory, receiver):
    with running_stack(
        tmp_path_factory.mktemp("traced"),
        OTEL_TRACES_EXPORTER="otlp",
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url,
        OTEL_BSP_SCHEDULE_DELAY="100",
    ) as stack:
        yield Client(env=stack.env, data_dir=Path(stack.data_dir))


def conversation_of(client: Client) -> tuple[str, str]:
    account, conversation = unique("acct"), unique("conv")
    client.enable_account(account)
    client.open_conversation(account, conversation, unique("consumer"))
    return account, conversation


def whole_trace(receiver: OtlpReceiver, file_id: str, first: str) -> dict[str, dict]:
    """The trace of the file's first span, once it holds every step up to its download."""
    wanted = {first, *STAGES, "scan", "disarm", DOWNLOAD}

    def complete():
        start = receiver.span_named(first, file_id)
        found = receiver.trace_of(start["trace_id"]) if start else {}
        return found if wanted <= set(found) else None

    return wait_until(complete, timeout=30, what=f"every span of {file_id}'s trace")


def assert_one_chain(spans: dict[str, dict], first: str) -> None:
    """Each step the child of the one before, in its own service, naming the file."""
    chain = [first, *STAGES, DOWNLOAD]
    for parent, child in itertools.pairwise(chain):
        assert spans[child]["parent"] == spans[parent]["span_id"], f"{child} is not a child of {parent}"
    for name, service in STAGES.items():
        assert spans[name]["service"] == service
    assert spans[DOWNLOAD]["service"] == "fileshare-delivery"
    assert spans["scan"]["parent"] == spans["disarm"]["parent"] == spans["sanitize file.uploaded"]["span_id"]
    file_ids = {s["attributes"].get("file_id") for n, s in spans.items() if n not in ("scan", "disarm")}
    assert len(file_ids) == 1 and None not in file_ids


def test_one_photo_is_one_trace_from_its_upload_to_its_download(client, receiver):
    account, conversation = conversation_of(client)
    r = client.upload(account, conversation, camera_photo(600, 400), filename=FILENAME, caption=CAPTION)
    assert r.status_code == 202, r.text
    file_id = r.json()["file_id"]
    assert client.wait_status(file_id, account)["status"] == "published"
    assert client.download(file_id, account).status_code == 200

    spans = whole_trace(receiver, file_id, UPLOAD)
    assert_one_chain(spans, UPLOAD)
    assert spans[UPLOAD]["service"] == "fileshare-upload" and spans[UPLOAD]["parent"] is None
    assert spans[UPLOAD]["attributes"]["http.response.status_code"] == 202
    assert spans[UPLOAD]["attributes"]["conversation_id"] == conversation
    assert spans[DOWNLOAD]["attributes"]["account_id"] == account
    assert spans[DOWNLOAD]["attributes"]["http.response.status_code"] == 200
    assert set(spans) == {UPLOAD, *STAGES, "scan", "disarm", DOWNLOAD}, "nothing else joined the file's trace"
    with receiver.lock:
        exported = b"".join(receiver.bodies)
    assert CAPTION.encode() not in exported and FILENAME.encode() not in exported

    # The next photo on the same keep-alive connection is a trace of its own.
    r = client.upload(account, conversation, camera_photo(300, 200))
    assert r.status_code == 202, r.text
    following = wait_until(lambda: receiver.span_named(UPLOAD, r.json()["file_id"]), what="the next upload's span")
    assert following["trace_id"] != spans[UPLOAD]["trace_id"] and following["parent"] is None


def publish_in_trace(client: Client, topic: str, key: str, event, traceparent: str) -> None:
    """A record as a producer with a span current sends it: the trace context in its headers."""

    async def send():
        producer = AIOKafkaProducer(bootstrap_servers=client.env["FS_KAFKA_BOOTSTRAP"])
        await producer.start()
        try:
            await producer.send_and_wait(
                topic, event.to_bytes(), key=key.encode(), headers=[("traceparent", traceparent.encode())]
            )
        finally:
            await producer.stop()

    asyncio.run(send())


def test_a_bots_traceparent_is_continued_through_the_pipeline(client, receiver):
    account, conversation = conversation_of(client)
    request = share_request(client.token(account, "bot", "bot-1"), account, conversation, png_bytes(), CAPTION)
    publish_in_trace(client, FILE_SHARE_REQUESTED, conversation, request, f"00-{BOT_TRACE}-00f067aa0ba902b7-01")
    [uploaded] = bot_outcomes(client, {request.request_id})[request.request_id]
    file_id = uploaded.file_id
    assert client.wait_status(file_id, account)["status"] == "published"
    assert client.download(file_id, account).status_code == 200

    spans = whole_trace(receiver, file_id, "accept file.share.requested")
    assert_one_chain(spans, "accept file.share.requested")
    assert spans["accept file.share.requested"]["trace_id"] == BOT_TRACE
    assert spans["accept file.share.requested"]["parent"] == "00f067aa0ba902b7"


def test_the_sdk_sends_the_callers_trace_context_and_the_upload_continues_it(client, receiver):
    account, conversation = conversation_of(client)
    caller_trace, caller_span = "c0ffee" * 5 + "ab", "1234567890abcdef"
    token = context.attach(propagate.extract({"traceparent": f"00-{caller_trace}-{caller_span}-01"}))
    try:
        with FileSharingClient(client.upload_url, client.token(account, "agent", "agent-1")) as sdk:
            file_id = sdk.send_file(account, conversation, png_bytes(), wait=False)["file_id"]
    finally:
        context.detach(token)
    upload = wait_until(lambda: receiver.span_named(UPLOAD, file_id), what="the upload's span")
    assert (upload["trace_id"], upload["parent"]) == (caller_trace, caller_span)
    wait_until(lambda: "sanitize file.uploaded" in receiver.trace_of(caller_trace), what="the sanitizer's span")


def test_a_forget_request_is_a_span_of_the_platforms_trace_naming_no_consumer(client, receiver):
    account, consumer, platform_trace = unique("acct"), unique("consumer"), "f0" * 16
    publish_in_trace(
        client,
        GDPR_FORGET,
        consumer,
        GdprForget(request_id=unique("forget"), account_id=account, consumer_id=consumer),
        f"00-{platform_trace}-00f067aa0ba902b7-01",
    )
    forget = wait_until(
        lambda: receiver.trace_of(platform_trace).get("forget gdpr.forget"), what="retention's span of the forget"
    )
    assert forget["service"] == "fileshare-retention" and forget["parent"] == "00f067aa0ba902b7"
    assert forget["attributes"]["account_id"] == account
    with receiver.lock:
        assert consumer.encode() not in b"".join(receiver.bodies)
