"""Who may read what (shared.rules.access), as the contract's table: role × resource × relation.

Relations: `own` (the caller's account; for a consumer, their own conversation), `other_consumer`
(the caller's account, another consumer's conversation), `other_account`, `unknown` (no such file
or conversation), `deleted` / `deleted_other_account` (a published file deleted since)."""

from __future__ import annotations

import itertools

import pytest

from shared.contract.auth import Principal
from shared.contract.events import ROLES
from shared.rules import Refused, access

OK = None
ACCOUNT, OTHER = "acct-a", "acct-b"
USERS = ("agent", "agent_manager", "bot", "admin", "platform")  # the account's users: every role but consumer
CONSUMER = ("consumer",)
EVERYONE = USERS + CONSUMER
NOT_FOUND, FORBIDDEN, GONE, DENIED = (404, "not_found"), (403, "forbidden"), (410, "gone"), (403, "permission_denied")

# The contract's rows (HTTP API section): (resource, roles, relation) -> expected.
ROWS = [
    # GET /v1/files/{id}: users of the file's account and the conversation's consumer.
    ("status", EVERYONE, "own", OK),
    ("status", USERS, "other_consumer", OK),
    ("status", CONSUMER, "other_consumer", NOT_FOUND),
    ("status", EVERYONE, "other_account", NOT_FOUND),
    ("status", EVERYONE, "unknown", NOT_FOUND),
    # GET /v1/files/{id}/content and POST …/link: the account's users and the conversation's consumer;
    # everyone else 403/404; a deleted file 410 (to its account's users) or 404.
    ("content", EVERYONE, "own", OK),
    ("content", USERS, "other_consumer", OK),
    ("content", CONSUMER, "other_consumer", FORBIDDEN),
    ("content", EVERYONE, "other_account", NOT_FOUND),
    ("content", EVERYONE, "unknown", NOT_FOUND),
    ("content", USERS, "deleted", GONE),
    ("content", CONSUMER, "deleted", NOT_FOUND),
    ("content", EVERYONE, "deleted_other_account", NOT_FOUND),
    # GET /v1/conversations/{conv}/messages: users of the account and the conversation's consumer.
    ("transcript", EVERYONE, "own", OK),
    ("transcript", USERS, "other_consumer", OK),
    ("transcript", CONSUMER, "other_consumer", FORBIDDEN),
    ("transcript", EVERYONE, "other_account", NOT_FOUND),
    ("transcript", EVERYONE, "unknown", NOT_FOUND),
    # GET /v1/accounts/{acct}/settings: the account's users.
    ("read_settings", USERS, "own", OK),
    ("read_settings", CONSUMER, "own", DENIED),
    ("read_settings", EVERYONE, "other_account", DENIED),
    # PUT …/settings: `platform` may set everything, `admin` all but feature_enabled.
    ("write_settings", ("platform", "admin"), "own", OK),
    ("write_settings", ("agent", "agent_manager", "bot", "consumer"), "own", DENIED),
    ("write_settings", EVERYONE, "other_account", DENIED),
    ("set_feature_enabled", ("platform",), "own", OK),
    ("set_feature_enabled", ("agent", "agent_manager", "bot", "admin", "consumer"), "own", DENIED),
    # GET …/capabilities: answered for any caller (about the caller: another account sees nothing).
    ("capabilities", EVERYONE, "own", OK),
    ("capabilities", EVERYONE, "other_account", OK),
]
RELATIONS = {
    "status": ("own", "other_consumer", "other_account", "unknown"),
    "content": ("own", "other_consumer", "other_account", "unknown", "deleted", "deleted_other_account"),
    "transcript": ("own", "other_consumer", "other_account", "unknown"),
    "read_settings": ("own", "other_account"),
    "write_settings": ("own", "other_account"),
    "set_feature_enabled": ("own",),
    "capabilities": ("own", "other_account"),
}
OWNERS = {
    "own": access.Owner(ACCOUNT, "cons-1"),
    "other_consumer": access.Owner(ACCOUNT, "cons-2"),
    "other_account": access.Owner(OTHER, "cons-1"),
    "unknown": None,
}


def rule_answer(resource: str, role: str, relation: str) -> tuple[int, str] | None:
    caller = Principal("cons-1" if role == "consumer" else "user-1", ACCOUNT, role)
    account = OTHER if relation == "other_account" else ACCOUNT
    if resource == "content" and relation.startswith("deleted"):
        answer = access.file_content(caller, None, OTHER if relation == "deleted_other_account" else ACCOUNT)
    else:
        answer = {
            "status": lambda: access.file_status(caller, OWNERS[relation]),
            "content": lambda: access.file_content(caller, OWNERS[relation]),
            "transcript": lambda: access.transcript(caller, OWNERS[relation]),
            "read_settings": lambda: access.read_settings(caller, account),
            "write_settings": lambda: access.write_settings(caller, account),
            "set_feature_enabled": lambda: access.set_feature_enabled(caller),
            "capabilities": lambda: access.read_capabilities(caller, account),
        }[resource]()
    assert answer is None or isinstance(answer, Refused)
    return None if answer is None else (answer.status, answer.code)


def expanded() -> dict[tuple[str, str, str], tuple[int, str] | None]:
    cells: dict[tuple[str, str, str], tuple[int, str] | None] = {}
    for resource, roles, relation, expected in ROWS:
        for role in roles:
            assert (resource, role, relation) not in cells, f"two rows for {(resource, role, relation)}"
            cells[(resource, role, relation)] = expected
    return cells


def test_the_table_covers_every_role_for_every_resource_and_relation():
    assert set(EVERYONE) == set(ROLES)
    wanted = {(res, role, rel) for res, rels in RELATIONS.items() for role, rel in itertools.product(ROLES, rels)}
    assert set(expanded()) == wanted


@pytest.mark.parametrize("resource,role,relation", sorted(expanded()))
def test_each_cell_gets_the_contracts_answer(resource, role, relation):
    assert rule_answer(resource, role, relation) == expanded()[(resource, role, relation)]


def test_another_account_is_never_told_that_a_file_or_conversation_exists():
    # Same answer and same message as for an unknown one: nothing to tell them apart.
    for role in ROLES:
        caller = Principal("cons-1", ACCOUNT, role)
        for rule in (access.file_status, access.file_content, access.transcript):
            unknown, foreign = rule(caller, None), rule(caller, OWNERS["other_account"])
            assert unknown is not None and foreign is not None
            assert (foreign.status, foreign.code, foreign.message) == (unknown.status, unknown.code, unknown.message)
