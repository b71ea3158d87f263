"""`make bench` bursts at a tiny size, on a stack of its own: every photo of the burst, the spread and
the single runs is published and the report has its figures, and no photo of the run is sent twice
(a repeated photo would measure clamd's verdict cache, not the scan). No timing assertions: the figures are
the bench's, read in docs/benchmarks.md."""

from __future__ import annotations

import json

import pytest

from bench import burst


@pytest.mark.timeout(600)
def test_burst_bench_publishes_every_photo_and_reports_its_figures(tmp_path):
    result = burst.main(
        ["--photos", "3", "--conversations", "2", "--single", "2", "--warmup", "1", "--kind", "jpeg_4mp"], out=tmp_path
    )

    assert json.loads((tmp_path / "burst.json").read_text()) == json.loads(json.dumps(result))
    assert (tmp_path / "burst.png").stat().st_size > 0
    for phase, conversations in (("burst", 1), ("spread", 2)):
        run = result[phase]
        assert run["photos"] == 3 and run["conversations"] == conversations
        assert run["photos_per_second"] > 0 and run["libvips_photos_per_second"] > 0
    assert len(result["single"]["latencies"]) == 2 and result["single"]["p50"] > 0
    assert {"upload", "sanitizer", "resizer", "delivery"} <= set(result["cpu_seconds_per_photo"])
    assert set(result["targets_met"]) == {"burst", "spread", "single"}
    sent = 1 + 3 + 3 + 2  # warm-up, burst, spread, single
    assert result["distinct_photos"] == sent and len(set(result["photo_sha256"])) == sent
