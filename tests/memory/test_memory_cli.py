"""`concierge memory expire|show|forget` are registered and answer from the configured stores."""

from __future__ import annotations

from typer.testing import CliRunner

from concierge.cli import app

runner = CliRunner()


def test_expire_runs_on_the_configured_memory_and_says_when_memory_is_off(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CONCIERGE_MEMORY__DB", str(tmp_path / "m.db"))
    monkeypatch.setenv("CONCIERGE_MEMORY__INDEX_DIR", str(tmp_path / "mi"))
    result = runner.invoke(app, ["memory", "expire"])
    assert result.exit_code == 0, result.output
    assert "expired: memory_notes 0, memory_facts 0, memory_vectors 0" in result.output
    monkeypatch.setenv("CONCIERGE_MEMORY__ENABLED", "false")
    result = runner.invoke(app, ["memory", "expire"])
    assert result.exit_code == 0 and "memory is off" in result.output
    monkeypatch.setenv("CONCIERGE_MEMORY__ALPHA", "2")
    result = runner.invoke(app, ["memory", "expire"])
    assert result.exit_code == 2 and "alpha" in result.output


def test_show_and_forget_are_memory_subcommands() -> None:
    result = runner.invoke(app, ["memory", "--help"])
    assert result.exit_code == 0
    assert all(name in result.output for name in ("show", "forget", "expire"))
