"""The orchestrator, identifier matching, ledger scrubbing, log deletes, build_stores and the CLI."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from concierge.core.events import AgentEvent, EventType
from concierge.erasure import (
    TOMBSTONE,
    ErasureFailed,
    EventLogStore,
    Matcher,
    UserSessions,
    build_stores,
    erase_user,
)
from concierge.erasure.cli import forget, show
from concierge.erasure.stores import scrub
from concierge.events.log import EmbeddedLog
from concierge.events.redis_streams import RedisStreamLog
from concierge.settings import Settings


class Box:
    def __init__(self, name: str, items: int, *, fail: str | None = None, sticky: int = 0) -> None:
        self.name, self.items, self.fail, self.sticky = name, items, fail, sticky

    async def count(self, tenant: str, user_id: str, identifiers: Sequence[str]) -> int:
        if self.fail == "count":
            raise RuntimeError("cannot count")
        return self.items

    async def erase(self, tenant: str, user_id: str, identifiers: Sequence[str]) -> int:
        if self.fail == "erase":
            raise RuntimeError("disk on fire")
        done, self.items = self.items - self.sticky, self.sticky
        return done


async def test_receipt_counts_and_idempotence() -> None:
    stores = [Box("a", 3), Box("b", 0)]
    receipt = await erase_user("t", "u", stores)
    assert [(s.store, s.before, s.erased, s.after) for s in receipt.stores] == [("a", 3, 3, 0), ("b", 0, 0, 0)]
    assert receipt.ok and receipt.erased == 3
    assert json.loads(receipt.model_dump_json())["stores"][0]["before"] == 3
    again = await erase_user("t", "u", stores)
    assert again.erased == 0 and again.ok


async def test_a_failing_store_is_reported_after_the_others_ran() -> None:
    stores = [Box("bad", 2, fail="erase"), Box("good", 4), Box("leaky", 2, sticky=1)]
    with pytest.raises(ErasureFailed) as caught:
        await erase_user("t", "u", stores)
    receipt = caught.value.receipt
    assert receipt.store("good").ok and receipt.store("good").erased == 4
    assert "disk on fire" in (receipt.store("bad").error or "")
    assert receipt.store("leaky").after == 1 and "remain" in (receipt.store("leaky").error or "")
    assert "bad" in str(caught.value) and "leaky" in str(caught.value)


def test_matcher_boundaries_and_phone_formats() -> None:
    m = Matcher(["u1", "a.b@x.com", "+1 (555) 010-0199"])
    assert m.mentions("user u1 said") and m.mentions({"k": "acme:u1"}) and m.mentions("mail A.B@X.com.")
    assert not m.mentions("u10") and not m.mentions("xa.b@x.com") and not m.mentions("u1@other.org")
    assert m.mentions("call 15550100199") and m.mentions("+1 555.010.0199") and not m.mentions("155501001990")


def test_scrub_keeps_amounts_only() -> None:
    m = Matcher(["u1", "a@b.co"])
    value = {"email": "a@b.co", "amount": 10, "refund_total": "12.50", "currency": "USD", "status": "u1",
             "items": [{"price": 3.5, "name": "hat"}], "phone": 5550100, "note": None}
    assert scrub(value, m) == {"email": TOMBSTONE, "amount": 10, "refund_total": "12.50", "currency": "USD",
                               "status": TOMBSTONE, "items": [{"price": 3.5, "name": TOMBSTONE}],
                               "phone": TOMBSTONE, "note": None}


def _event(tenant: str, user: str, conv: str, text: str) -> AgentEvent:
    return AgentEvent(type=EventType.MESSAGE_RECEIVED, tenant=tenant, conversation_id=conv, user_id=user,
                      payload={"text": text})


async def _fill(log: Any) -> None:
    events = [_event("acme", "u1", "acme:s1", "hi"), _event("acme", "u2", "acme:s2", "about a@b.co"),
              _event("acme", "u2", "acme:s3", "hello"), _event("globex", "u1", "globex:s1", "a@b.co")]
    await log.append([(e.partition(log.partitions), e.to_json()) for e in events])
    await log.append([(0, b"not json acme a@b.co"), (0, b"not json globex")])


async def _check_log_store(log: Any, compact: bool) -> list[Any]:
    """Erase u1 of acme from `log`; the records left."""
    await _fill(log)
    store = EventLogStore(log, UserSessions(), compact=compact)
    assert await store.count("acme", "u1", ["u1", "a@b.co"]) == 3  # own event, a mention, a raw record
    assert await store.erase("acme", "u1", ["u1", "a@b.co"]) == 3
    assert await store.count("acme", "u1", ["u1", "a@b.co"]) == 0
    assert await store.count("globex", "u1", ["u1", "a@b.co"]) == 1
    return [r for p in range(log.partitions) for r in await log.read(p, 0, 100)]


async def test_embedded_log_delete(tmp_path: Path) -> None:
    log = EmbeddedLog(tmp_path / "events.db", partitions=2)
    try:
        assert len(await _check_log_store(log, compact=True)) == 3  # the other users' records
        assert await log.group_read("g", "c", 10) != []  # reads go on past the holes
    finally:
        await log.close()


async def test_redis_streams_delete(redis_client: Any) -> None:
    left = await _check_log_store(RedisStreamLog(redis_client, partitions=2), compact=False)
    assert len(left) == 3  # the other users' records; XDEL removed exactly u1's


def _settings(tmp: Path, **extra: Any) -> Settings:
    return Settings(sessions={"url": f"sqlite+aiosqlite:///{tmp / 'sessions.db'}"},
                    events={"bus": f"embedded:{tmp / 'events.db'}", "audit_url": f"sqlite+aiosqlite:///{tmp / 'a.db'}"},
                    lake={"folder": str(tmp / "lake")}, **extra)


async def test_build_stores_from_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no .concierge/memory.db here: no memory store
    stores = build_stores(_settings(tmp_path))
    try:
        assert [s.name for s in stores] == ["events", "audit_index", "lake", "ledger", "runtime_sessions",
                                            "serving_records"]
        receipt = await erase_user("acme", "u1", stores.stores)
        assert receipt.ok and receipt.erased == 0
    finally:
        await stores.aclose()


def test_cli_forget_and_show(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("concierge.erasure.cli._settings", lambda config: _settings(tmp_path))
    app = typer.Typer()
    app.command("forget")(forget)
    app.command("show")(show)
    runner = CliRunner()
    shown = runner.invoke(app, ["show", "u1", "--tenant", "acme", "--json"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["stores"]["ledger"] == 0
    done = runner.invoke(app, ["forget", "u1", "--tenant", "acme", "--json", "-i", "a@b.co"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)["identifiers"] == 2
    fact = runner.invoke(app, ["forget", "u1", "--tenant", "acme", "--fact", "phone"])
    assert fact.exit_code == 2 and "memory" in fact.output  # no memory database here


async def test_real_memory_facade_is_an_erasable_store(tmp_path: Path) -> None:
    from concierge.erasure import MemoryStore
    from concierge.memory import Memory  # the project's own module: an import error fails the test

    facade = Memory(tmp_path / "memory.db", tmp_path / "index")
    try:
        receipt = await erase_user("acme", "u1", [MemoryStore(facade)])
        assert receipt.ok and receipt.store("memory").before == 0
    finally:
        await facade.close()
        await facade.engine.dispose()
