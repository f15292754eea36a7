"""`concierge kb ingest|search` end to end with the real embedding model."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest
from typer.testing import CliRunner

from concierge.cli import app

runner = CliRunner()
KNOWLEDGE = Path(str(resources.files("concierge.domains.retail").joinpath("knowledge")))


@pytest.fixture(scope="module")
def kb(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("kb")
    result = runner.invoke(app, ["kb", "ingest", str(KNOWLEDGE), "--tenant", "retail", "--kb", str(folder)])
    assert result.exit_code == 0, result.output
    assert "returns-electronics v2" in result.output and "returns-electronics v1" in result.output
    return folder


def test_search_shows_citations_confidence_and_signals(kb: Path) -> None:
    result = runner.invoke(app, ["kb", "search", "Do you take American Express?", "--tenant", "retail",
                                 "--kb", str(kb), "--k", "3"])
    assert result.exit_code == 0, result.output
    assert "payment-methods#" in result.output
    assert "grounded" in result.output and "not grounded" not in result.output
    assert "coverage" in result.output and "citations: [payment-methods#" in result.output


def test_search_says_it_does_not_know_about_what_the_store_never_wrote(kb: Path) -> None:
    result = runner.invoke(app, ["kb", "search", "Are you hiring warehouse staff at the moment?", "--tenant",
                                 "retail", "--kb", str(kb)])
    assert result.exit_code == 0, result.output
    assert "not grounded: the agent says it does not know" in result.output


@pytest.mark.parametrize(("args", "message"), [
    (["search", "  ", "--tenant", "retail"], "the query is empty"),
    (["search", "returns", "--tenant", "nobody"], "unknown tenant 'nobody'"),
])
def test_bad_searches_fail_with_a_clear_error(kb: Path, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["kb", *args, "--kb", str(kb)])
    assert result.exit_code == 2
    assert message in result.output


def test_an_undecodable_file_is_refused_and_the_index_is_unchanged(kb: Path, tmp_path: Path) -> None:
    bad = tmp_path / "broken.md"
    bad.write_bytes(b"# Returns\n\xff\xfe\xfa not text")
    before = runner.invoke(app, ["kb", "search", "return window for headphones", "--tenant", "retail",
                                 "--kb", str(kb)]).output
    result = runner.invoke(app, ["kb", "ingest", str(bad), "--tenant", "retail", "--kb", str(kb)])
    assert result.exit_code == 2 and "broken.md" in result.output
    after = runner.invoke(app, ["kb", "search", "return window for headphones", "--tenant", "retail",
                                "--kb", str(kb)]).output
    assert after == before
