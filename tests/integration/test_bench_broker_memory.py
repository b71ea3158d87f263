"""`make bench`'s broker memory bench at its tiny size (30 photos, a 1 MB limit): it recycles, loses
no photo, hands none to the platform twice, never sends the same photo twice, and reports its
figures. No timing or memory assertions: the figures are the bench's, read in the README."""

from __future__ import annotations

import json

import pytest

from bench import broker_memory


@pytest.mark.timeout(900)
def test_broker_memory_bench_recycles_and_loses_no_photo(tmp_path):
    result = broker_memory.main(["--tiny"], out=tmp_path)

    assert json.loads((tmp_path / "broker_memory.json").read_text()) == json.loads(json.dumps(result))
    assert result["sent"] == result["distinct_photos"] == 30
    assert result["recycles"] >= 1 and result["recycle_log_lines"] == result["recycles"]
    assert result["lost"] == 0 and result["received_twice"] == 0
    assert result["marks"][0]["photos"] == 0 and result["max_rss_mb"] > 0
