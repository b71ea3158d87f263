"""Issue 3: account settings (who may change what, validation) and the OpenAPI page."""
from __future__ import annotations

from tests.support import unique

DOC = {"feature_enabled": True, "file_sharing_enabled": True,
       "permissions": {"agent": ["send_files_local"], "agent_manager": [], "bot": []},
       "max_image_dimension": 800, "retention": "P13M"}


def put(client, account, doc, role="platform", token_account=None):
    return client.http.put(f"{client.upload_url}/v1/accounts/{account}/settings", json=doc,
                           headers=client.auth(token_account or account, role, f"{role}-1"))


def get(client, account, role="agent"):
    return client.http.get(f"{client.upload_url}/v1/accounts/{account}/settings",
                           headers=client.auth(account, role, f"{role}-1"))


def code(r):
    return r.status_code, r.json()["error"]["code"]


def test_defaults_are_all_off(client):
    doc = get(client, unique("acct")).json()
    assert doc == {"feature_enabled": False, "file_sharing_enabled": False,
                   "permissions": {"agent": [], "agent_manager": [], "bot": []},
                   "max_image_dimension": 800, "retention": "P13M"}


def test_account_team_sets_everything_admin_all_but_the_feature_flag(client):
    account = unique("acct")
    assert put(client, account, DOC).status_code == 200
    assert get(client, account).json() == DOC
    # The admin changes the account setting and permissions, keeping feature_enabled as it is.
    admin_doc = {**DOC, "file_sharing_enabled": False, "permissions": {"agent": [], "bot": ["send_files_local"]}}
    r = put(client, account, admin_doc, role="admin")
    assert r.status_code == 200, r.text
    admin_doc.pop("feature_enabled")
    r = put(client, account, admin_doc, role="admin")  # omitted: kept, not reset to the default
    assert r.status_code == 200 and r.json()["feature_enabled"] is True
    assert get(client, account).json()["permissions"]["bot"] == ["send_files_local"]
    # But not the feature flag itself.
    assert code(put(client, account, {**DOC, "feature_enabled": False}, role="admin")) == (403, "permission_denied")
    assert get(client, account).json()["feature_enabled"] is True
    for role in ("agent", "agent_manager", "bot", "consumer"):
        assert code(put(client, account, DOC, role=role)) == (403, "permission_denied"), role
    assert code(put(client, account, DOC, token_account=unique("acct"))) == (403, "permission_denied")
    assert code(get(client, account, role="consumer")) == (403, "permission_denied")


def test_settings_document_is_validated(client):
    account = unique("acct")
    invalid = {
        "unknown profile": {**DOC, "permissions": {"supervisor": ["send_files_local"]}},
        "unknown permission": {**DOC, "permissions": {"agent": ["send_files_email"]}},
        "unknown key": {**DOC, "colour": "blue"},
        "dimension 99": {**DOC, "max_image_dimension": 99},
        "dimension 4097": {**DOC, "max_image_dimension": 4097},
        "retention in words": {**DOC, "retention": "13 months"},
        "zero retention": {**DOC, "retention": "P0D"},
        "feature flag not a bool": {**DOC, "feature_enabled": "maybe"},
    }
    for name, doc in invalid.items():
        r = put(client, account, doc)
        assert code(r) == (422, "invalid_request"), (name, r.text)
    assert get(client, account).json()["feature_enabled"] is False, "nothing was stored"
    for dimension, retention in ((100, "P1Y2M3DT4H5M6S"), (4096, "PT5S"), (800, "P2W")):
        assert put(client, account, {**DOC, "max_image_dimension": dimension, "retention": retention}).status_code == 200


def test_openapi_lists_every_endpoint_with_its_error_codes(client):
    spec = client.http.get(f"{client.upload_url}/openapi.json").json()
    paths = spec["paths"]

    def codes(path, method):
        responses = paths[path][method]["responses"]
        return {(int(status), c.strip("` ")) for status, r in responses.items() if int(status) >= 400
                for c in r["description"].removeprefix("error codes: ").split(",")}

    upload = "/v1/accounts/{account_id}/conversations/{conversation_id}/files"
    assert codes(upload, "post") >= {
        (401, "unauthenticated"), (403, "feature_disabled"), (403, "file_sharing_disabled"),
        (403, "permission_denied"), (404, "conversation_not_found"), (409, "conversation_closed"),
        (409, "channel_not_supported"), (413, "file_too_large"), (415, "unsupported_type"), (422, "invalid_request")}
    form = paths[upload]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]
    assert set(form) == {"file", "caption", "source"}
    assert codes("/v1/accounts/{account_id}/settings", "put") >= {
        (401, "unauthenticated"), (403, "permission_denied"), (422, "invalid_request")}
    assert codes("/v1/accounts/{account_id}/settings", "get") >= {(401, "unauthenticated"), (403, "permission_denied")}
    assert codes("/v1/accounts/{account_id}/conversations/{conversation_id}/capabilities", "get") >= {
        (401, "unauthenticated")}
    assert codes("/v1/files/{file_id}", "get") >= {(401, "unauthenticated"), (404, "not_found")}
    assert client.http.get(f"{client.upload_url}/docs").status_code == 200
