"""`concierge lake ingest|refine|compact|erase` and `concierge sql` on a real embedded bus and lake."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from typer.testing import CliRunner

from concierge import Agent, Runtime
from concierge.cli import app
from concierge.core import Principal
from concierge.events.bus import open_log
from concierge.events.producer import EventProducer
from concierge.testing import ScriptedModel

runner = CliRunner()


async def _chat(bus: Path) -> None:
    log = open_log(f"embedded:{bus}", partitions=4)
    producer = EventProducer(log)
    agent = Agent(instructions="You help.", model=ScriptedModel(["Hi Ann.", "Noted."]), version="1")
    runtime = Runtime(agent, events=producer)
    async with producer:
        await runtime.turn("c1", "Hello, I am ann@example.com", Principal("ann", tenant="shop"))
        await runtime.turn("c1", "Call me on +1 415 555 0100", Principal("ann", tenant="shop"))
    await log.close()


def test_events_flow_from_a_conversation_to_sql_and_are_erased(tmp_path: Path, monkeypatch) -> None:
    bus, lake = tmp_path / "events.db", tmp_path / "lake"
    asyncio.run(_chat(bus))
    monkeypatch.setenv("CONCIERGE_EVENTS__BUS", f"embedded:{bus}")
    monkeypatch.setenv("CONCIERGE_EVENTS__PARTITIONS", "4")
    result = runner.invoke(app, ["lake", "ingest", "--lake", str(lake)])
    assert result.exit_code == 0, result.output
    assert "bronze: 10 new events" in result.output  # per turn: message, model call start + end, reasoning step, reply
    assert runner.invoke(app, ["lake", "ingest", "--lake", str(lake)]).output.startswith("bronze: 0 new events")
    result = runner.invoke(app, ["lake", "refine", "--lake", str(lake)])
    assert result.exit_code == 0 and "silver: 10 events" in result.output, result.output
    query = "SELECT payload FROM silver.events WHERE type = 'message_received' ORDER BY turn"
    result = runner.invoke(app, ["sql", query, "--lake", str(lake), "--format", "json"])
    assert result.exit_code == 0, result.output
    texts = [json.loads(row["payload"])["text"] for row in json.loads(result.output)]
    assert texts == ["Hello, I am [EMAIL]", "Call me on [PHONE]"]
    gold = json.loads(runner.invoke(app, ["sql", "SELECT conversations, agent_version FROM gold.daily",
                                          "--lake", str(lake), "--format", "json"]).output)
    assert gold == [{"conversations": 1, "agent_version": "agent@1"}]
    assert runner.invoke(app, ["lake", "compact", "nope", "--lake", str(lake)]).exit_code == 2
    result = runner.invoke(app, ["lake", "erase", "--tenant", "shop", "--user", "ann", "--lake", str(lake)])
    assert result.exit_code == 0, result.output
    left = runner.invoke(app, ["sql", "SELECT count(*) AS n FROM bronze.events WHERE user_id = 'ann'",
                               "--lake", str(lake), "--format", "json"])
    assert json.loads(left.output) == [{"n": 0}]
    assert runner.invoke(app, ["sql", "SELEC nonsense", "--lake", str(lake)]).exit_code == 2
