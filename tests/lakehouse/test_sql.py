"""SQL over the lake, and the `concierge sql` command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from concierge.cli_lake import lake_app
from concierge.core.errors import ValidationError
from concierge.lakehouse.catalog import open_catalog
from concierge.lakehouse.gold import aggregate
from concierge.lakehouse.silver import refine
from concierge.lakehouse.sql import open_lake, query

from .test_silver_gold import event, fill_bronze


@pytest.fixture
def lake(tmp_path: Path) -> Path:
    folder = tmp_path / "lake"
    catalog = open_catalog(folder)
    fill_bronze(catalog, [event(payload={"text": "hi"}), event("response_sent", payload={"text": "ok", "latency_ms": 40}),
                          event(tenant="globex", conv="g", payload={"text": "yo"}), event("bogus")])
    aggregate(catalog, days=refine(catalog).days)
    return folder


def test_query_each_layer(lake: Path) -> None:
    assert query(lake, "SELECT count(*) AS n FROM bronze.events").to_pylist() == [{"n": 4}]
    rows = query(lake, "SELECT tenant, count(*) AS n FROM silver.events GROUP BY 1 ORDER BY 1").to_pylist()
    assert rows == [{"tenant": "acme", "n": 2}, {"tenant": "globex", "n": 1}]
    assert query(lake, "SELECT count(*) AS n FROM silver.dead_letters").to_pylist() == [{"n": 1}]
    gold = query(lake, "SELECT tenant, conversations, latency_p50_ms FROM gold.daily ORDER BY 1").to_pylist()
    assert gold == [{"tenant": "acme", "conversations": 1, "latency_p50_ms": 40.0},
                    {"tenant": "globex", "conversations": 1, "latency_p50_ms": None}]
    opened = open_lake(open_catalog(lake))
    assert opened.backend in ("iceberg", "arrow") and (opened.backend == "iceberg") == (opened.reason is None)
    opened.close()


def test_bad_sql_is_a_validation_error(lake: Path) -> None:
    with pytest.raises(ValidationError, match="SQL failed"):
        query(lake, "SELEC nonsense")
    with pytest.raises(ValidationError, match="no_such"):
        query(lake, "SELECT * FROM silver.no_such")


def test_cli(lake: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(lake_app, ["sql", "SELECT tenant FROM silver.conversations ORDER BY 1", "--lake", str(lake)])
    assert result.exit_code == 0, result.output
    assert "acme" in result.output and "globex" in result.output
    result = runner.invoke(lake_app, ["sql", "SELECT count(*) AS n FROM gold.daily", "--lake", str(lake), "--format", "json"])
    assert json.loads(result.output) == [{"n": 2}]
    result = runner.invoke(lake_app, ["sql", "SELECT 1 AS a", "--lake", str(lake), "--format", "csv"])
    assert result.output.splitlines() == ["a", "1"]
    result = runner.invoke(lake_app, ["sql", "SELECT * FROM nope", "--lake", str(lake)])
    assert result.exit_code == 2 and "SQL failed" in result.output
