"""make run's scanner setup: what it does when clamd is missing and it cannot install it."""

from __future__ import annotations

import pytest

from shared.devstack import embedded_clamd


def test_a_user_who_cannot_install_clamd_is_told_the_one_command_to_run(monkeypatch):
    monkeypatch.setattr(embedded_clamd, "clamd_binary", lambda: None)
    monkeypatch.setattr(embedded_clamd, "_as_root_prefix", lambda: None)
    with pytest.raises(embedded_clamd.ClamdUnavailable) as refused:
        embedded_clamd.ensure_installed()
    assert "sudo apt-get install clamav-daemon" in str(refused.value)
    assert "FS_CLAMD=disabled" in str(refused.value)


def test_an_installed_clamd_is_used_as_it_is(monkeypatch):
    monkeypatch.setattr(embedded_clamd, "clamd_binary", lambda: "/usr/sbin/clamd")
    monkeypatch.setattr(embedded_clamd, "_as_root_prefix", lambda: pytest.fail("no install when installed"))
    assert embedded_clamd.ensure_installed() == "/usr/sbin/clamd"


def test_signatures_already_there_are_loaded_without_freshclam(tmp_path, monkeypatch):
    monkeypatch.setattr(embedded_clamd, "freshclam_once", lambda *a: pytest.fail("freshclam with signatures"))
    db_dir = embedded_clamd.write_test_signatures(tmp_path / "db").parent
    assert embedded_clamd.prepare_for_run(db_dir, tmp_path / "own") == db_dir
