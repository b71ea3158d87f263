"""`make bench` history at a tiny size, on a stack of its own: it loads its history, every service
becomes ready on the empty and on the loaded database, and the loaded files answer on the status
API. No timing assertions: the figures are the bench's, read in docs/benchmarks.md."""

from __future__ import annotations

import json

import pytest

from bench import history
from shared.devstack.embedded import SERVICES

FILES, CONVERSATIONS, ACCOUNTS, PROBES = 2000, 400, 20, 100


@pytest.mark.timeout(900)
def test_history_bench_reports_every_service_ready_and_the_loaded_files(tmp_path):
    result = history.main(
        [
            "--files",
            str(FILES),
            "--conversations",
            str(CONVERSATIONS),
            "--accounts",
            str(ACCOUNTS),
            "--restarts",
            "1",
            "--probes",
            str(PROBES),
        ],
        out=tmp_path,
    )

    assert json.loads((tmp_path / "history.json").read_text()) == json.loads(json.dumps(result))
    assert (tmp_path / "history.png").stat().st_size > 0
    loaded_rows = {table: t["rows"] for table, t in result["load"]["tables"].items()}
    assert loaded_rows == {
        **{f"{s}.account_settings": ACCOUNTS for s in ("upload", "sanitizer", "resizer", "retention")},
        "upload.conversations": CONVERSATIONS,
        "delivery.conversations": CONVERSATIONS,
        "upload.files": FILES,
        "delivery.messages": FILES,
        "retention.files": FILES,
    }
    assert result["load"]["seconds"] > 0
    assert set(result["empty_database_rows"].values()) == {0}
    for state in ("empty", "loaded"):
        for name in SERVICES:
            figures = result[state]["services"][name]
            assert figures["ready_seconds"] > 0 and figures["rss_mb"] > 0 and figures["rss_mb_after_probes"] > 0
        for what in ("status", "transcript"):
            assert result[state]["probes"][what]["requests"] == PROBES
            assert result[state]["probes"][what]["p99_ms"] >= result[state]["probes"][what]["p50_ms"] > 0
    assert result["empty"]["probes"]["status"]["codes"] == {"404": PROBES}
    assert result["loaded"]["probes"]["status"]["codes"] == {"200": PROBES}
    assert result["loaded"]["probes"]["status"]["statuses"] == {"published": PROBES}
    assert result["loaded"]["probes"]["transcript"]["codes"] == {"200": PROBES}
    assert set(result["comparison"]["services"]) == set(SERVICES)
