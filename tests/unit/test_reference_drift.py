"""docs/reference is the code's own description: the OpenAPI the two HTTP services generate and the
AsyncAPI of the topics, built from the pydantic event models. A route, an error code or an event
changed without `make docs` (`fileshare schemas --write docs/reference`) fails here."""

from __future__ import annotations

import importlib
import json
import typing

import yaml

from services.cli import main
from services.reference import REFERENCE_DIR, offline_settings, reference_files, stale_files
from shared.contract import events as ev
from shared.contract.asyncapi import RECEIVES
from shared.contract.topics import topic_configs


def refs(node) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [r for value in node.values() for r in refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in refs(value)]
    return []


def resolve(document: dict, pointer: str):
    node = document
    for part in pointer.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def test_the_committed_reference_is_what_the_code_generates():
    assert stale_files(REFERENCE_DIR) == [], "the code changed: regenerate docs/reference with `make docs`"


def test_a_reference_file_that_drifted_or_is_missing_is_found(tmp_path):
    for name, text in reference_files().items():
        (tmp_path / name).write_text(text)
    (tmp_path / "asyncapi.yaml").write_text((tmp_path / "asyncapi.yaml").read_text().replace("conversation_id", "chat"))
    (tmp_path / "openapi-delivery.json").unlink()
    assert stale_files(tmp_path) == ["openapi-delivery.json", "asyncapi.yaml"]


def test_the_command_writes_the_reference(tmp_path, capsys):
    assert main(["schemas", "--write", str(tmp_path / "reference")]) == 0
    assert stale_files(tmp_path / "reference") == []
    assert "openapi-upload.json" in capsys.readouterr().out


def test_every_topic_is_a_channel_whose_messages_are_its_event_models_with_their_key():
    doc = yaml.safe_load((REFERENCE_DIR / "asyncapi.yaml").read_text())
    assert doc["asyncapi"].startswith("3.")
    assert {channel["address"] for channel in doc["channels"].values()} == set(topic_configs(168))
    event_models = typing.get_args(typing.get_args(ev.AnyEvent)[0])
    assert {m.__name__ for m in event_models} <= set(doc["components"]["messages"])
    pipeline = next(c for c in doc["channels"].values() if c["address"] == "file.uploaded")
    uploaded = resolve(doc, pipeline["messages"]["FileUploaded"]["$ref"])
    assert uploaded["bindings"]["kafka"]["key"]["description"] == "the conversation_id"
    assert "caption_sealed" in resolve(doc, uploaded["payload"]["$ref"])["properties"]
    assert all(resolve(doc, ref) is not None for ref in refs(doc))


def test_each_openapi_document_lists_its_routes_with_unique_operation_ids_and_resolvable_refs():
    for name, paths in {
        "openapi-upload.json": {"/v1/files/{file_id}", "/v1/accounts/{account_id}/settings"},
        "openapi-delivery.json": {"/v1/files/{file_id}/content", "/v1/files/{file_id}/link"},
    }.items():
        doc = json.loads((REFERENCE_DIR / name).read_text())
        assert paths <= set(doc["paths"])
        ids = [op["operationId"] for item in doc["paths"].values() for op in item.values()]
        assert len(ids) == len(set(ids))
        assert all(resolve(doc, ref) is not None for ref in refs(doc))


def test_the_asyncapi_receivers_are_the_topics_each_service_consumes():
    """Built, not started: a service's processors name their topics without connecting to anything."""
    settings = offline_settings()
    for name in ("upload", "sanitizer", "resizer", "delivery", "retention"):
        service = importlib.import_module(f"services.{name}.app").bootstrap(settings)
        consumed = {topic for processor in service.processors for topic in processor.topics}
        assert consumed == set(RECEIVES[name]), name
