"""`Runtime.turn` in a new process continues a session written by an earlier process."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from concierge import Agent, Runtime
from concierge.core import AssistantMessage, ToolResultMessage, UserMessage
from concierge.runtime.sessions import SqlSessionStore
from concierge.testing import FunctionModel

FIRST_PROCESS = textwrap.dedent(
    """
    import asyncio, sys
    from concierge import Agent, Runtime, tool
    from concierge.runtime.sessions import SqlSessionStore
    from concierge.testing import ScriptedModel, call

    @tool(writes=True)
    def cancel_order(order_id: str) -> dict:
        "Cancel an order."
        return {"order_id": order_id, "status": "cancelled"}

    async def main(url):
        model = ScriptedModel([call("cancel_order", order_id="W7"), "Order W7 is cancelled."])
        runtime = Runtime(Agent(instructions="x", model=model, tools=[cancel_order]), store=SqlSessionStore(url))
        result = await runtime.turn("customer-1", "cancel W7 please")
        await runtime.store.close()
        print(result.reply)

    asyncio.run(main(sys.argv[1]))
    """
)


async def test_new_process_continues_the_session_with_full_history(tmp_path: Path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'sessions.db'}"
    done = subprocess.run([sys.executable, "-c", FIRST_PROCESS, url], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Order W7 is cancelled."

    seen = []

    def model(messages, tools):
        seen.extend(messages)
        return "Yes, W7 was cancelled earlier."

    runtime = Runtime(Agent(instructions="x", model=FunctionModel(model)), store=SqlSessionStore(url))
    result = await runtime.turn("customer-1", "did you cancel it?")
    await runtime.store.close()

    assert result.reply == "Yes, W7 was cancelled earlier."
    roles = [m.role for m in seen]
    assert roles == ["system", "user", "assistant", "tool", "assistant", "user"]
    assert seen[1] == UserMessage("cancel W7 please")
    assert isinstance(seen[3], ToolResultMessage) and '"status":"cancelled"' in seen[3].content
    assert seen[4] == AssistantMessage("Order W7 is cancelled.")
    assert 'cancel_order({"order_id":"W7"}) succeeded' in seen[0].content  # pinned fact survived the restart

    store = SqlSessionStore(url)
    reloaded = await store.load("customer-1")
    await store.close()
    assert reloaded is not None and reloaded.turns == 2 and len(reloaded.history) == 6
