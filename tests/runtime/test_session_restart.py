"""A session outlives its process: each turn below is written by a separate Python process."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import concierge
from concierge.core.messages import AssistantMessage, ToolCall, ToolResultMessage, UserMessage
from concierge.runtime.sessions import SqlSessionStore

# argv: database file, phase ("first" creates s1 and commits turn 1; "second" checks turn 1, adds turn 2).
SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    from datetime import UTC, datetime
    from concierge.core.messages import AssistantMessage, ToolCall, ToolResultMessage, UserMessage
    from concierge.runtime.sessions import SqlSessionStore, TurnCommit

    TURN_ONE = [
        UserMessage("Where is order 42?"),
        AssistantMessage(None, (ToolCall("c1", "lookup_order", {"order_id": 42}),)),
        ToolResultMessage("c1", "lookup_order", "shipped"),
        AssistantMessage("Order 42 has shipped."),
    ]
    TURN_TWO = [UserMessage("Thanks!"), AssistantMessage("You're welcome.")]

    async def main(db, phase):
        store = SqlSessionStore(f"sqlite+aiosqlite:///{db}")
        try:
            if phase == "first":
                session = await store.create("s1", datetime(2026, 1, 1, tzinfo=UTC))
                await store.commit_turn(session, TurnCommit(
                    TURN_ONE, ["order 42: shipped"], 0, None, {"order": 42},
                    datetime(2026, 1, 1, 0, 1, tzinfo=UTC)))
            else:
                session = await store.load("s1")
                assert session is not None, "session s1 missing after restart"
                assert session.history == TURN_ONE, session.history
                assert session.pinned_facts == ["order 42: shipped"]
                assert session.state == {"order": 42} and session.turns == 1
                await store.commit_turn(session, TurnCommit(
                    TURN_TWO, [], 0, None, {"order": 42, "thanked": True},
                    datetime(2026, 1, 1, 0, 2, tzinfo=UTC)))
        finally:
            await store.close()
        print("ok", phase)

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)


def _run_phase(script: Path, db: Path, phase: str) -> None:
    src = str(Path(concierge.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)}
    done = subprocess.run(
        [sys.executable, str(script), str(db), phase], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, f"phase {phase} failed:\n{done.stdout}\n{done.stderr}"
    assert f"ok {phase}" in done.stdout


async def test_session_survives_process_restarts(tmp_path: Path) -> None:
    script = tmp_path / "phase.py"
    script.write_text(SCRIPT)
    db = tmp_path / "data" / "sessions.db"

    _run_phase(script, db, "first")
    _run_phase(script, db, "second")

    store = SqlSessionStore(f"sqlite+aiosqlite:///{db}")
    try:
        session = await store.load("s1")
    finally:
        await store.close()
    assert session is not None
    assert session.history == [
        UserMessage("Where is order 42?"),
        AssistantMessage(None, (ToolCall("c1", "lookup_order", {"order_id": 42}),)),
        ToolResultMessage("c1", "lookup_order", "shipped"),
        AssistantMessage("Order 42 has shipped."),
        UserMessage("Thanks!"),
        AssistantMessage("You're welcome."),
    ]
    assert session.turns == 2
    assert session.pinned_facts == ["order 42: shipped"]
    assert session.state == {"order": 42, "thanked": True}
    assert session.created_at == datetime(2026, 1, 1, tzinfo=UTC)
    assert session.updated_at == datetime(2026, 1, 1, 0, 2, tzinfo=UTC)
