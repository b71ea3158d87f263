"""Storage paths are built only from ids that stay inside their own path segment."""

from __future__ import annotations

import pytest

from shared.adapters.storage import ObjectKey
from shared.adapters.storage.keys import check_id


@pytest.mark.parametrize("value", ["acct-1", "conv_2.x", "user@example.com", "a:b", "a..b", "A" * 128])
def test_ordinary_ids_are_accepted(value):
    assert check_id(value) == value


@pytest.mark.parametrize(
    "value", ["", "../etc", "a/b", "a\\b", ".hidden", "conv\n", "conv\r", "a b", "A" * 129, "é", None, 7]
)
def test_ids_that_could_leave_their_segment_or_forge_a_line_are_refused(value):
    with pytest.raises(ValueError):
        check_id(value)


def test_an_object_key_round_trips_and_refuses_unknown_variants():
    key = ObjectKey("acct", "cons", "conv", "file", "final")
    assert str(key) == "acct/cons/conv/file/final" and ObjectKey.parse(str(key)) == key
    with pytest.raises(ValueError):
        ObjectKey("acct", "cons", "conv", "file", "thumbnail")
