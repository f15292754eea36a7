"""Acceptance: erase one user of one tenant from every store, then look for them in the raw bytes.

Two users of tenant `acme` (A and B) and A's user id again in tenant `globex` (another person)
fill real stores: SQLite sessions, serving records and ledger; the embedded event log; the audit
index (caught up from the log); an Iceberg lake (ingested from the log, refined, aggregated);
Redis keys; a memory double. After erasing A, the SQLite files (vacuumed), Redis (keys and
values) and the lake's current data files hold none of A's email, phone or words; B and globex
are untouched; the receipt's before counts are what was put there; ledger amounts remain.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from concierge.core.events import AgentEvent, EventType
from concierge.core.messages import AssistantMessage, UserMessage
from concierge.core.usage import Usage
from concierge.erasure import (
    TOMBSTONE,
    AuditIndexStore,
    EventLogStore,
    LakeStore,
    LedgerStore,
    MemoryStore,
    RedisKeysStore,
    RuntimeSessionsStore,
    ServingRecordsStore,
    UserSessions,
    count_user,
    erase_user,
)
from concierge.events.log import EmbeddedLog
from concierge.guardrails.audit import AuditIndex
from concierge.lakehouse.catalog import BRONZE, CONVERSATIONS, GOLD, SILVER, open_catalog
from concierge.lakehouse.gold import aggregate
from concierge.lakehouse.ingest import ingest
from concierge.lakehouse.silver import refine
from concierge.memory import Memory
from concierge.memory.extract import parse_extraction
from concierge.runtime.result import TurnResult
from concierge.runtime.sessions.base import TurnCommit
from concierge.runtime.sessions.sql import SqlSessionStore
from concierge.serving.records import SessionDirectory
from concierge.testing.embedders import KeywordEmbedder
from concierge.tools.ledger.base import AuditRecord, LedgerEntry
from concierge.tools.ledger.sql import SqlLedger


def remembered(email: str, phone: str, words: str) -> str:
    """What an extraction model would keep of one of these customers."""
    return json.dumps({"summary": f"Called from {phone} about {words}.", "resolved": [], "satisfaction": "high",
                       "preferences": [{"key": "contact_email", "value": email, "turn": 1}],
                       "facts": [{"key": "interest", "value": f"likes {words}", "turn": 1}], "unresolved": []})


T0 = datetime(2025, 3, 3, 10, 0, tzinfo=UTC)
A, B = "usr-a7f3", "usr-b912"
A_EMAIL, A_PHONE, A_WORDS = "alice.smith@example.com", "+1 555-010-0199", "violet-otter-4471"
B_EMAIL, B_PHONE, B_WORDS = "bob.jones@example.org", "+1 555-020-0288", "amber-heron-9902"
G_EMAIL, G_WORDS = "alice.g@globex.test", "green-lynx-3310"  # globex's user with A's id
A_NEEDLES = [A_EMAIL.encode(), b"555-010-0199", b"5550100199", A_WORDS.encode()]

PEOPLE = [  # tenant, user, sessions, email, phone, words
    ("acme", A, ["sa1", "sa2"], A_EMAIL, A_PHONE, A_WORDS),
    ("acme", B, ["sb1"], B_EMAIL, B_PHONE, B_WORDS),
    ("globex", A, ["sa1"], G_EMAIL, "+44 20 7946 0018", G_WORDS),
]


def events_of(tenant: str, user: str, session: str, email: str, phone: str, words: str, i: int) -> list[AgentEvent]:
    conv, ts = f"{tenant}:{session}", T0 + timedelta(minutes=i)
    common = {"tenant": tenant, "conversation_id": conv, "user_id": user, "turn": 1}
    return [
        AgentEvent(type=EventType.MESSAGE_RECEIVED, ts=ts, payload={"text": f"I am {email}, {phone}; {words}"},
                   **common),
        AgentEvent(type=EventType.TOOL_CALL_START, ts=ts + timedelta(seconds=1),
                   payload={"tool": "refund", "arguments": {"email": email, "amount": 42.5}}, **common),
        AgentEvent(type=EventType.RESPONSE_SENT, ts=ts + timedelta(seconds=2),
                   payload={"text": f"done, {words}", "latency_ms": 12.0}, **common),
    ]


async def populate(tmp: Path, redis_client: Any) -> dict[str, Any]:
    url = f"sqlite+aiosqlite:///{tmp / 'sessions.db'}"
    runtime = SqlSessionStore(url)
    directory = SessionDirectory.from_engine(runtime.engine)
    ledger = SqlLedger.from_engine(runtime.engine)
    log = EmbeddedLog(tmp / "events.db", partitions=4)
    index = AuditIndex(tmp / "audit.db")
    memory = Memory(tmp / "memory.db", tmp / "memory-index", embedder=KeywordEmbedder())
    i = 0
    for tenant, user, sessions, email, phone, words in PEOPLE:
        for session in sessions:
            i += 1
            rid = f"{tenant}:{session}"
            await directory.open(tenant, session, user, T0)
            result = TurnResult(session_id=rid, reply=f"ok {words}", steps=(), usage=Usage(), stopped_by=None,
                                trace_id=f"t{i}", new_messages=())
            await directory.record_turn(tenant, session, user, f"I am {email}, {phone}", result, T0, 5.0)
            stored = await runtime.create(rid, T0)
            await runtime.commit_turn(stored, TurnCommit(
                new_messages=[UserMessage(f"I am {email}, {phone}; {words}"), AssistantMessage(f"hi {words}")],
                new_pinned_facts=[f"refund of 42.50 sent to {email}"], window_start=0, summary=None,
                state={"customer_email": email}, updated_at=T0))
            entry = LedgerEntry(key=f"k-{tenant}-{session}", session_id=rid, tool="refund",
                                arguments={"email": email, "phone": phone, "order_id": f"O-{session}",
                                           "amount": 42.5},
                                principal={"user_id": user, "tenant": tenant, "role": "customer", "scopes": [],
                                           "customer_id": None},
                                status="attempted", started_at=T0)
            assert await ledger.claim(entry) is None
            await ledger.update(entry.finish("succeeded", T0 + timedelta(seconds=1), result={
                "refund_id": f"R-{session}", "amount": 42.5, "total": "42.50", "currency": "USD",
                "message": f"refund sent to {email} ({words})"}))
            await log.append([(e.partition(log.partitions), e.to_json())
                              for e in events_of(tenant, user, session, email, phone, words, i)])
            await redis_client.hset(f"concierge:lock:{{{rid}}}:next", "n", "3")
            await redis_client.set(f"concierge:lock:{{{rid}}}:serving", "3")
        await ledger.audit(AuditRecord(at=T0, session_id=f"{tenant}:{sessions[0]}", tool="cancel",
                                       arguments={"email": email}, principal={"user_id": user, "tenant": tenant},
                                       decision="refused", reason=f"{email} lacks scope", extra={"phone": phone}))
        await redis_client.hset(f"concierge:rl:u:{tenant}:{user}", mapping={"tokens": "4.5", "ts": "1.0"})
        await memory.remember(tenant, user, parse_extraction(remembered(email, phone, words), f"{tenant}:{sessions[0]}", 2))
        await memory.recall(tenant, user, words, 200)  # builds the user's vector index files
    # A runtime session whose id carries A's id (no serving record: found by its name).
    own = await runtime.create(f"acme:{A}", T0)
    await runtime.commit_turn(own, TurnCommit(new_messages=[UserMessage(f"{A_WORDS} {A_EMAIL}")],
                                              new_pinned_facts=[], window_start=0, summary=None, state={},
                                              updated_at=T0))
    await redis_client.set("concierge:rl:t:acme", "1")  # the tenant's bucket: nobody's personal data

    catalog = open_catalog(tmp / "lake")
    assert await ingest(catalog, log, until_drained=True) == 12
    aggregate(catalog, days=refine(catalog).days)
    assert (await index.catch_up(log)).added == 12

    sessions = UserSessions(directory, runtime)
    stores = [MemoryStore(memory), RedisKeysStore(redis_client, sessions),
              EventLogStore(log, sessions, compact=True), AuditIndexStore(index, sessions, vacuum=True),
              LakeStore(catalog), LedgerStore(ledger, sessions, vacuum=True),
              RuntimeSessionsStore(runtime, sessions, vacuum=True), ServingRecordsStore(directory, vacuum=True)]
    return {"stores": stores, "runtime": runtime, "directory": directory, "ledger": ledger, "log": log,
            "index": index, "catalog": catalog, "memory": memory}


EXPECTED_A = {
    "memory": 7,  # three facts (contact email, interest, satisfaction), their vectors, one session note
    "redis_keys": 5,  # the rate-limit bucket, two lock keys of each of two sessions
    "events": 6,  # three events in each of two conversations
    "audit_index": 6,
    "lake": 6 + 6 + 2,  # bronze events, silver events, silver conversations
    "ledger": 3,  # two entries and one refused call
    "runtime_sessions": 3,  # sa1, sa2 and the session named after the user
    "serving_records": 4,  # two sessions, two turn records
}


def sqlite_bytes(path: Path) -> bytes:
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("VACUUM")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    data = path.read_bytes()
    for extra in (Path(f"{path}-wal"), Path(f"{path}-journal")):
        if extra.exists():
            data += extra.read_bytes()
    return data


def lake_text(catalog: Any, name: str) -> tuple[bytes, str]:
    """The raw bytes and the decoded rows of the data files the table's current snapshot lists."""
    table = catalog.load_table(name)
    raw, rows = b"", []
    for task in table.scan().plan_files():
        path = task.file.file_path.removeprefix("file://")
        raw += Path(path).read_bytes()
        rows.extend(pq.read_table(path).to_pylist())
    return raw, json.dumps(rows, default=str)


def present(needles: list[bytes], raw: bytes) -> list[bytes]:
    return [n for n in needles if n in raw]


async def test_erase_one_user_everywhere(tmp_path: Path, redis_client: Any) -> None:
    world = await populate(tmp_path, redis_client)
    stores, memory = world["stores"], world["memory"]
    before_b = await count_user("acme", B, stores, identifiers=[B_EMAIL, B_PHONE])
    before_g = await count_user("globex", A, stores, identifiers=[G_EMAIL])
    assert all(isinstance(v, int) and v > 0 for v in before_b.values()), before_b
    b_raw_before = {name: present([B_EMAIL.encode(), B_WORDS.encode()], sqlite_bytes(tmp_path / name))
                    for name in ("sessions.db", "events.db", "audit.db")}
    assert all(b_raw_before.values())

    receipt = await erase_user("acme", A, stores, identifiers=[A_EMAIL, A_PHONE, "Alice Smith"])

    assert receipt.ok
    assert {s.store: s.before for s in receipt.stores} == EXPECTED_A
    assert {s.store: s.after for s in receipt.stores} == dict.fromkeys(EXPECTED_A, 0)
    assert all(s.erased for s in receipt.stores), receipt
    json.loads(receipt.model_dump_json())  # a JSON document
    assert receipt.identifiers == 4

    # The raw bytes of every SQLite file: none of A's email, phone or words.
    for name in ("sessions.db", "events.db", "audit.db", "lake/catalog.db", "memory.db"):
        raw = sqlite_bytes(tmp_path / name)
        assert present(A_NEEDLES, raw) == [], name
    # The memory's vector index files: A's file is gone, B's and globex's remain, none holds A's data.
    index_files = sorted(f for f in (tmp_path / "memory-index").rglob("*") if f.is_file())
    a_file = memory.index.path("acme", A)
    assert a_file is not None and not a_file.exists()
    assert {memory.index.path("acme", B), memory.index.path("globex", A)} <= set(index_files)
    assert present(A_NEEDLES, b"".join(f.read_bytes() for f in index_files)) == []
    # ... while B's and globex's are all still there.
    for name in ("sessions.db", "events.db", "audit.db"):
        raw = sqlite_bytes(tmp_path / name)
        assert present([B_EMAIL.encode(), B_WORDS.encode(), G_EMAIL.encode(), G_WORDS.encode()], raw) == [
            B_EMAIL.encode(), B_WORDS.encode(), G_EMAIL.encode(), G_WORDS.encode()], name

    # Redis: keys and values.
    redis_dump = b""
    for key in await redis_client.keys("*"):
        redis_dump += key + b"\n"
        kind = (await redis_client.type(key)).decode()
        if kind == "string":
            redis_dump += await redis_client.get(key) or b""
        elif kind == "hash":
            redis_dump += json.dumps({k.decode(): v.decode() for k, v in (await redis_client.hgetall(key)).items()},
                                     ).encode()
    assert b"acme:" + A.encode() not in redis_dump and b"{acme:sa1}" not in redis_dump
    assert b"acme:" + B.encode() in redis_dump and b"globex:" + A.encode() in redis_dump
    assert b"concierge:rl:t:acme" in redis_dump

    # The lake's current snapshot: raw bytes (silver and gold are uncompressed) and decoded rows (bronze: lz4).
    catalog = world["catalog"]
    bronze_raw, bronze_rows = lake_text(catalog, BRONZE)
    assert present(A_NEEDLES, bronze_raw + bronze_rows.encode()) == []
    bronze = catalog.load_table(BRONZE).scan().to_arrow().to_pylist()
    assert {(r["tenant"], r["user_id"]) for r in bronze} == {("acme", B), ("globex", A)}
    assert B_EMAIL in bronze_rows and G_EMAIL in bronze_rows
    for name in (SILVER, CONVERSATIONS, GOLD):
        raw, rows = lake_text(catalog, name)
        assert present(A_NEEDLES, raw + rows.encode()) == [], name
    silver = catalog.load_table(SILVER).scan().to_arrow().to_pylist()
    assert {(r["tenant"], r["user_id"]) for r in silver} == {("acme", B), ("globex", A)}
    for path in (tmp_path / "lake").rglob("*"):  # no file left anywhere in the warehouse
        if path.is_file() and path.suffix != ".db":
            assert present([A_EMAIL.encode(), A_WORDS.encode()], path.read_bytes()) == [], path

    # The stores, read through their own APIs.
    runtime, directory, ledger = world["runtime"], world["directory"], world["ledger"]
    assert await runtime.session_ids("acme:") == ["acme:sb1"]
    assert await runtime.session_ids("globex:") == ["globex:sa1"]
    assert [s.session_id for s in await directory.list("acme")] == ["sb1"]
    assert [s.user_id for s in await directory.list("globex")] == [A]
    for session in ("acme:sa1", "acme:sa2"):
        [entry] = await ledger.entries(session)
        assert entry.status == "succeeded" and entry.tool == "refund"
        assert entry.arguments == {"email": TOMBSTONE, "phone": TOMBSTONE, "order_id": TOMBSTONE, "amount": 42.5}
        assert entry.result == {"refund_id": TOMBSTONE, "amount": 42.5, "total": "42.50", "currency": "USD",
                                "message": TOMBSTONE}
        assert entry.principal["user_id"] == TOMBSTONE and entry.principal["erased_at"]
    [refused] = await ledger.audit_records("acme:sa1")
    assert refused.arguments == {"email": TOMBSTONE} and refused.reason == TOMBSTONE
    [b_entry] = await ledger.entries("acme:sb1")
    assert b_entry.arguments["email"] == B_EMAIL and b_entry.principal["user_id"] == B
    [g_entry] = await ledger.entries("globex:sa1")
    assert g_entry.arguments["email"] == G_EMAIL
    counts = {key: sum((await memory.count_user(tenant, user)).values())
              for key, (tenant, user) in {"A": ("acme", A), "B": ("acme", B), "G": ("globex", A)}.items()}
    assert counts == {"A": 0, "B": 7, "G": 7}

    # B and globex untouched, store by store.
    assert await count_user("acme", B, stores, identifiers=[B_EMAIL, B_PHONE]) == before_b
    assert await count_user("globex", A, stores, identifiers=[G_EMAIL]) == before_g

    # Idempotent: a second run finds and erases nothing, and succeeds.
    again = await erase_user("acme", A, stores, identifiers=[A_EMAIL, A_PHONE, "Alice Smith"])
    assert {s.store: (s.before, s.erased, s.after) for s in again.stores} == dict.fromkeys(EXPECTED_A, (0, 0, 0))

    await world["runtime"].close()
    await world["index"].close()
    await world["log"].close()
