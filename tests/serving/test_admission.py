"""A worker runs at most `max_running_turns` turns at once; a bigger burst waits, in arrival order."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from concierge.core.principal import Principal
from concierge.security.auth import Caller, scopes_for
from concierge.security.tenants import TenantRecord
from concierge.serving.ratelimit import InProcessRateLimiter
from concierge.serving.records import SessionInfo
from concierge.serving.service import TurnService

NOW = datetime(2026, 1, 1, tzinfo=UTC)
RECORD = TenantRecord(name="acme", created_at=NOW, jwt_secret="s" * 32, jwt_issuer="concierge:acme",
                      jwt_audience="concierge", webhook_secret="w" * 32, rate_per_second=1000.0, rate_burst=1000,
                      user_rate_per_second=1000.0, user_rate_burst=1000)


class Tenants:
    async def get_tenant(self, name: str) -> TenantRecord | None:
        return RECORD if name == "acme" else None


def service(limit: int) -> tuple[TurnService, list[str], asyncio.Event, dict[str, int]]:
    svc = TurnService(runtime=None, tenants=Tenants(), sessions=None, deliveries=None,  # type: ignore[arg-type]
                      limiter=InProcessRateLimiter(), max_running_turns=limit)
    started: list[str] = []
    release = asyncio.Event()
    seen = {"inside": 0, "most": 0}

    async def admitted(caller: Caller, info: SessionInfo, text: Any, observer: Any) -> dict[str, Any]:
        seen["inside"] += 1
        seen["most"] = max(seen["most"], seen["inside"])
        started.append(text)
        await release.wait()
        seen["inside"] -= 1
        return {"reply": text}

    svc._run_admitted = admitted  # type: ignore[method-assign]
    return svc, started, release, seen


CALLER = Caller(Principal("key:backend", tenant="acme", role="service", scopes=scopes_for("service")), "api_key")


def info(i: int) -> SessionInfo:
    return SessionInfo("acme", f"s{i}", f"u{i}", NOW, NOW, 0, "", "", "new")


async def test_a_burst_beyond_the_limit_waits_and_runs_in_arrival_order() -> None:
    svc, started, release, seen = service(limit=2)
    runs = [asyncio.create_task(svc.run(CALLER, info(i), f"m{i}")) for i in range(6)]
    for _ in range(5):
        await asyncio.sleep(0)
    assert started == ["m0", "m1"] and svc.running == 6  # the waiting four count as running: drain waits
    release.set()
    results = await asyncio.gather(*runs)
    assert [r["reply"] for r in results] == [f"m{i}" for i in range(6)]
    assert started == [f"m{i}" for i in range(6)] and seen["most"] == 2 and svc.running == 0


async def test_a_waiting_turn_that_is_cancelled_gives_up_its_place() -> None:
    svc, started, release, _ = service(limit=1)
    first = asyncio.create_task(svc.run(CALLER, info(0), "m0"))
    waiting = asyncio.create_task(svc.run(CALLER, info(1), "m1"))
    last = asyncio.create_task(svc.run(CALLER, info(2), "m2"))
    await asyncio.sleep(0.01)
    waiting.cancel()
    release.set()
    assert (await first)["reply"] == "m0" and (await last)["reply"] == "m2"
    assert waiting.cancelled() and started == ["m0", "m2"] and svc.running == 0
