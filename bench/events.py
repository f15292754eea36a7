#!/usr/bin/env python3
"""Events into the lakehouse: bus → Iceberg bronze throughput on one core, and emit → queryable lag.

    .venv/bin/python bench/events.py                        # 200,000 events, batches 50,000 and 10,000
    .venv/bin/python bench/events.py --events 20000 --seconds 3 --skip-redis   # quick check
    .venv/bin/python bench/events.py --write-results        # also writes bench/results/events.md

Throughput (per bus: the embedded SQLite log in a temp folder, Redis Streams on a throwaway
`redis-server` the bench starts): N AgentEvents (8 tenants, 4,000 conversations, one UTC day,
a realistic payload per type, ~250-byte JSON) are appended to the bus in chunks of 10,000 (the
produce phase, timed: `partition` + `to_json` + `append`, as `EventProducer` delivers them). Then
the process pins every one of its threads to one core (`sched_setaffinity`) and a `BronzeWriter`
drains the bus into a fresh lake (`run_once` until nothing is pending, as the ingest job does);
events/s = N / wall time of the drain (the table's creation is not in it). Redis-server is a
separate process and is not pinned. Goal: ≥ 100,000 events/s batched. If a bus misses, one more
drain of that bus is profiled (cProfile over `BronzeWriter.write`, called directly, plus the wall
time of the bus reads) and the breakdown is printed.

Lag (per bus, fresh bus and lake): the ingest job runs as its own process (`python -m
concierge.lakehouse.ingest`, as deployed: idle sleep 50 ms, `--lag-batch` records per commit) while
this process emits `--rate` events/s for `--seconds` s through an `EventProducer` (defaults:
batch 1,000, flush interval 50 ms). Every 100th event is a probe; a thread polls bronze (fresh
`load_table`, then a scan filtered on the pending probes' ids when the snapshot changed, every
`--poll-ms`) and a probe's arrival is the first scan that returns it. Lag = arrival − emit (same
clock). The probe's poll interval and scan time are part of what it measures.

Progress goes to stderr; the report (Markdown) to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import datetime
import gc
import json
import os
import platform
import pstats
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchkit import command_line, cpu_model, filesystem, log, percentile, versions
from pyiceberg.exceptions import NoSuchTableError
from pyiceberg.expressions import In

from concierge.core.events import AgentEvent, EventType
from concierge.events.log import EmbeddedLog
from concierge.events.producer import EventProducer
from concierge.events.redis_streams import RedisStreamLog
from concierge.lakehouse.bronze import BronzeWriter
from concierge.lakehouse.catalog import BRONZE, open_catalog
from concierge.testing.redis import RedisServer

REPO = Path(__file__).resolve().parents[1]
RESULTS_MD = REPO / "bench" / "results" / "events.md"
GOAL = 100_000.0
PARTITIONS = 8
PRODUCE_CHUNK = 10_000
TENANTS = [f"tenant-{i}" for i in range(8)]
PROBE_EVERY = 100

# --------------------------------------------------------------------------------------
# Events
# --------------------------------------------------------------------------------------

_TYPES = [EventType.MESSAGE_RECEIVED, EventType.LLM_CALL_START, EventType.LLM_CALL_END, EventType.TOOL_CALL_START,
          EventType.TOOL_CALL_END, EventType.RETRIEVAL_QUERY, EventType.RETRIEVAL_RESULT, EventType.RESPONSE_SENT]
_TOOLS = ["lookup_order", "refund_order", "track_shipment", "update_address"]


def _payload(kind: EventType, rng: random.Random) -> dict[str, Any]:
    if kind is EventType.MESSAGE_RECEIVED:
        return {"channel": "web", "chars": rng.randint(5, 400), "lang": "en"}
    if kind is EventType.LLM_CALL_START:
        return {"model": "gpt-4o-mini", "prompt_tokens": rng.randint(200, 4000)}
    if kind is EventType.LLM_CALL_END:
        return {"model": "gpt-4o-mini", "input_tokens": rng.randint(200, 4000), "output_tokens": rng.randint(5, 600),
                "latency_ms": round(rng.uniform(150, 3000), 1), "cost_usd": round(rng.uniform(0, 0.01), 6)}
    if kind is EventType.TOOL_CALL_START:
        return {"tool": rng.choice(_TOOLS), "args_chars": rng.randint(10, 200)}
    if kind is EventType.TOOL_CALL_END:
        return {"tool": rng.choice(_TOOLS), "ok": rng.random() > 0.05, "latency_ms": round(rng.uniform(5, 800), 1)}
    if kind is EventType.RETRIEVAL_QUERY:
        return {"k": 5, "query_chars": rng.randint(10, 200)}
    if kind is EventType.RETRIEVAL_RESULT:
        return {"hits": 5, "top_score": round(rng.random(), 4), "latency_ms": round(rng.uniform(1, 50), 2)}
    return {"chars": rng.randint(20, 1200), "latency_ms": round(rng.uniform(300, 6000), 1)}


def make_events(n: int, seed: int) -> list[AgentEvent]:
    """n events over one UTC day (yesterday), 8 tenants, 4,000 conversations, types in turn order."""
    rng = random.Random(seed)
    day = datetime.datetime.now(datetime.UTC).replace(hour=0, minute=0, second=0, microsecond=0) - datetime.timedelta(days=1)
    step = 86_400 / max(n, 1)
    out = []
    for i in range(n):
        conv = rng.randrange(4000)
        kind = _TYPES[i % len(_TYPES)]
        out.append(AgentEvent(
            type=kind, ts=day + datetime.timedelta(seconds=i * step), tenant=TENANTS[conv % len(TENANTS)],
            conversation_id=f"conv-{conv:05d}", turn=rng.randrange(12), trace_id=f"{rng.getrandbits(64):016x}",
            user_id=f"user-{conv % 1500}", agent_version="support-v3", payload=_payload(kind, rng)))
    return out


def to_records(events: list[AgentEvent]) -> list[tuple[int, bytes]]:
    return [(event.partition(PARTITIONS), event.to_json()) for event in events]


# --------------------------------------------------------------------------------------
# Buses
# --------------------------------------------------------------------------------------


class Bus:
    """Makes fresh logs of one kind: `fresh()` empties it, `open()` is another handle on the same data."""

    def __init__(self, kind: str, work: Path, redis: RedisServer | None) -> None:
        self.kind, self.work, self.redis = kind, work, redis
        self.generation = 0

    @property
    def label(self) -> str:
        return "embedded (SQLite)" if self.kind == "embedded" else "Redis Streams"

    @property
    def path(self) -> Path:
        return self.work / f"bus-{self.generation}.db"

    @property
    def spec(self) -> str:
        return f"embedded:{self.path}" if self.kind == "embedded" else self.redis.url  # type: ignore[union-attr]

    async def fresh(self) -> Any:
        self.generation += 1
        log_ = self.open()
        if self.kind == "redis":
            await log_.client.flushdb()
        return log_

    def open(self) -> Any:
        if self.kind == "embedded":
            return EmbeddedLog(self.path, partitions=PARTITIONS)
        return RedisStreamLog.from_url(self.spec, partitions=PARTITIONS)


# --------------------------------------------------------------------------------------
# Throughput: produce, then drain on one core
# --------------------------------------------------------------------------------------


def pin_all_threads(core: int) -> None:
    """`sched_setaffinity(0, ...)` moves only the calling thread: move every thread of the process
    (new threads inherit their creator's mask)."""
    for tid in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(tid), {core})
        except OSError:
            pass


def unpin_all_threads(cores: set[int]) -> None:
    for tid in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(tid), cores)
        except OSError:
            pass


async def produce(bus_log: Any, events: list[AgentEvent]) -> float:
    t0 = time.perf_counter()
    for i in range(0, len(events), PRODUCE_CHUNK):
        await bus_log.append(to_records(events[i:i + PRODUCE_CHUNK]))
    return time.perf_counter() - t0


async def drain(writer: BronzeWriter) -> tuple[int, int, float]:
    """Like `ingest(..., until_drained=True)`: commits, events written, wall seconds."""
    commits = written = 0
    t0 = time.perf_counter()
    while True:
        count = await writer.run_once()
        if count:
            commits += 1
            written += count
        elif not await writer.pending():
            break
    return commits, written, time.perf_counter() - t0


def bronze_count(lake: Path) -> int:
    return open_catalog(lake).load_table(BRONZE).scan(selected_fields=("event_id",)).to_arrow().num_rows


async def throughput(bus: Bus, events: list[AgentEvent], batches: list[int], core: int, work: Path,
                     profile: bool) -> dict[str, Any]:
    n = len(events)
    bus_log = await bus.fresh()
    log(f"[{bus.label}] produce {n:,} events onto the bus (chunks of {PRODUCE_CHUNK:,})")
    produce_s = await produce(bus_log, events)
    log(f"  produce: {produce_s:.2f} s = {n / produce_s:,.0f} events/s")
    rows = []
    cores = os.sched_getaffinity(0)
    for batch in batches:
        lake = work / f"lake-{bus.kind}-tp-{batch}"
        writer = BronzeWriter(open_catalog(lake), bus_log, batch_size=batch)
        t0 = time.perf_counter()
        await asyncio.to_thread(writer.load)
        load_s = time.perf_counter() - t0
        pin_all_threads(core)
        try:
            commits, written, drain_s = await drain(writer)
        finally:
            unpin_all_threads(cores)
        count = await asyncio.to_thread(bronze_count, lake)
        rate = n / drain_s
        log(f"  drain batch {batch:,}: {drain_s:.2f} s = {rate:,.0f} events/s, {commits} commits, "
            f"bronze rows {count:,} {'PASS' if rate >= GOAL else 'MISS'}")
        rows.append({"batch": batch, "drain_s": round(drain_s, 3), "events_per_s": round(rate), "commits": commits,
                     "written": written, "bronze_rows": count, "table_create_s": round(load_s, 3),
                     "passed": rate >= GOAL})
        shutil.rmtree(lake, ignore_errors=True)
    prof = None
    if profile and not all(r["passed"] for r in rows):
        prof = await profile_drain(bus, bus_log, batches[0], core, work)
    await bus_log.close()
    return {"bus": bus.label, "events": n, "produce_s": round(produce_s, 3),
            "produce_events_per_s": round(n / produce_s), "drains": rows, "profile": prof}


# What each part of `BronzeWriter.write` is: (label, file suffix, function) -> cumulative time under cProfile.
PROFILE_PARTS = [
    ("`_vectorised` (Arrow JSON parse of the envelopes, payloads re-encoded with orjson)", "bronze_rows.py", "_vectorised"),
    ("pyiceberg: split into day×tenant partitions (`_determine_partitions`, acero filter)", "pyiceberg/io/pyarrow.py",
     "_determine_partitions"),
    ("pyiceberg: Parquet write (`write_file`; its worker threads, waited on)", "pyiceberg/io/pyarrow.py", "write_file"),
    ("pyiceberg: commit (manifests, metadata JSON, catalog row)", "pyiceberg/table/update/__init__.py", "__exit__"),
    ("catalog.load_table after the commit", "pyiceberg/catalog/sql.py", "load_table"),
    ("`write` self time (loop, orjson.loads, dedup set, offsets; pa.Table.from_pydict)", "bronze.py", "write"),
]


async def profile_drain(bus: Bus, bus_log: Any, batch: int, core: int, work: Path) -> dict[str, Any]:
    """Bus reads timed by wall clock; `write` under cProfile in this thread (to_thread would hide it)."""
    lake = work / f"lake-{bus.kind}-profile"
    writer = BronzeWriter(open_catalog(lake), bus_log, batch_size=batch)
    writer.load()
    log(f"  profiling a drain with batch {batch:,} (cProfile over write, wall clock over the reads)")
    cores = os.sched_getaffinity(0)
    prof = cProfile.Profile()
    read_s = write_s = 0.0
    pin_all_threads(core)
    try:
        t_all = time.perf_counter()
        while True:
            t0 = time.perf_counter()
            records = await writer.poll()
            read_s += time.perf_counter() - t0
            if not records:
                break
            t0 = time.perf_counter()
            prof.enable()
            writer.write(records)
            prof.disable()
            write_s += time.perf_counter() - t0
        total_s = time.perf_counter() - t_all
    finally:
        unpin_all_threads(cores)
    stats = pstats.Stats(prof)
    entries = stats.stats  # type: ignore[attr-defined]
    write_cum = sum(ct for (file, _line, name), (_cc, _nc, _tt, ct, _callers) in entries.items()
                    if name == "write" and file.endswith("bronze.py"))
    parts = []
    for label, suffix, func in PROFILE_PARTS:
        own = func == "write"
        cum = sum((tt if own else ct) for (file, _line, name), (_cc, _nc, tt, ct, _callers) in entries.items()
                  if name == func and file.endswith(suffix))
        parts.append({"part": label, "s": round(cum, 3),
                      "share_of_write": round(cum / write_cum, 3) if write_cum else None})
    top = sorted(entries.items(), key=lambda kv: kv[1][2], reverse=True)[:12]
    top_self = [{"function": f"{Path(f).name}:{ln}({nm})", "self_s": round(v[2], 3)} for (f, ln, nm), v in top]
    shutil.rmtree(lake, ignore_errors=True)
    log(f"  profile: reads {read_s:.2f} s, write {write_s:.2f} s (profiled), total {total_s:.2f} s")
    for p in parts:
        log(f"    {p['part']}: {p['s']:.2f} s")
    return {"batch": batch, "read_s": round(read_s, 3), "write_s_profiled": round(write_s, 3),
            "write_cum_s": round(write_cum, 3), "total_s": round(total_s, 3), "parts": parts, "top_self": top_self}


# --------------------------------------------------------------------------------------
# Lag: emit → queryable in bronze
# --------------------------------------------------------------------------------------


class Probe(threading.Thread):
    """Polls bronze for the pending probe ids; records when each is first returned by a scan."""

    def __init__(self, lake: Path, poll_s: float) -> None:
        super().__init__(daemon=True, name="bronze-probe")
        self.lake, self.poll_s = lake, poll_s
        self.pending: dict[str, float] = {}  # event_id -> emit perf_counter
        self.emitted_ns: dict[str, int] = {}  # event_id -> emit time.time_ns (for the snapshot timestamps)
        self.lags: list[float] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.scans = 0
        self.scan_s = 0.0

    def add(self, event_id: str, emitted: float, emitted_ns: int) -> None:
        with self.lock:
            self.pending[event_id] = emitted
            self.emitted_ns[event_id] = emitted_ns

    def run(self) -> None:
        catalog = open_catalog(self.lake)
        last_snapshot = None
        while not self.stop.is_set():
            loaded = time.perf_counter()  # a query started now sees whatever this load finds
            try:
                table = catalog.load_table(BRONZE)
            except NoSuchTableError:
                time.sleep(self.poll_s)
                continue
            snapshot = table.metadata.current_snapshot_id
            with self.lock:
                ids = list(self.pending)
            if snapshot is not None and ids and snapshot != last_snapshot:
                t0 = time.perf_counter()
                found = table.scan(row_filter=In("event_id", ids), selected_fields=("event_id",)).to_arrow()
                self.scans += 1
                self.scan_s += time.perf_counter() - t0
                with self.lock:
                    for event_id in found.column("event_id").to_pylist():
                        emitted = self.pending.pop(event_id, None)
                        if emitted is not None:
                            self.lags.append(loaded - emitted)
                last_snapshot = snapshot if not found.num_rows or len(found) == len(ids) else None
            time.sleep(self.poll_s)


def commit_lags(table: Any, emitted_ns: dict[str, int]) -> list[int]:
    """Offline: the first snapshot holding each probe, its timestamp (set by the writer just before the
    catalog commit) minus the emit time, in ns. Same machine, same wall clock."""
    remaining = dict(emitted_ns)
    out = []
    for snapshot in sorted(table.metadata.snapshots, key=lambda s: s.timestamp_ms):
        if not remaining:
            break
        found = table.scan(snapshot_id=snapshot.snapshot_id, row_filter=In("event_id", list(remaining)),
                           selected_fields=("event_id",)).to_arrow()
        for event_id in found.column("event_id").to_pylist():
            sent = remaining.pop(event_id, None)
            if sent is not None:
                out.append(snapshot.timestamp_ms * 1_000_000 - sent)
    return out


async def lag(bus: Bus, rate: float, seconds: float, batch: int, poll_ms: int, work: Path, seed: int) -> dict[str, Any]:
    bus_log = await bus.fresh()
    lake = work / f"lake-{bus.kind}-lag"
    ingest_log = open(work / f"ingest-{bus.kind}.log", "wb")  # noqa: SIM115, ASYNC230 - closed below; set-up only
    cmd = [sys.executable, "-m", "concierge.lakehouse.ingest", "--lake", str(lake), "--bus", bus.spec,
           "--partitions", str(PARTITIONS), "--batch", str(batch)]
    ingest = subprocess.Popen(cmd, stdout=ingest_log, stderr=subprocess.STDOUT,  # noqa: ASYNC220 - set-up only
                              stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while b"ready" not in (work / f"ingest-{bus.kind}.log").read_bytes():
            if ingest.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ingest did not start: {(work / f'ingest-{bus.kind}.log').read_text()[-2000:]}")
            await asyncio.sleep(0.05)
        probe = Probe(lake, poll_ms / 1000)
        probe.start()
        rng = random.Random(seed)
        total = int(rate * seconds)
        log(f"[{bus.label}] lag: emitting {total:,} events at {rate:,.0f}/s for {seconds:g} s "
            f"(every {PROBE_EVERY}th a probe), ingest batch {batch:,}")
        producer = EventProducer(bus_log)
        accepted = probes = 0
        emit_late = 0.0
        async with producer:
            t0 = time.perf_counter()
            i = 0
            while i < total:
                due = min(total, int((time.perf_counter() - t0) * rate) + 1)
                while i < due:
                    conv = rng.randrange(2000)
                    kind = _TYPES[i % len(_TYPES)]
                    payload = _payload(kind, rng)
                    is_probe = i % PROBE_EVERY == 0
                    emitted = time.perf_counter()
                    payload["emit_unix_ns"] = emitted_ns = time.time_ns()
                    event = AgentEvent(type=kind, tenant=TENANTS[conv % len(TENANTS)], conversation_id=f"conv-{conv:05d}",
                                       turn=rng.randrange(12), user_id=f"user-{conv % 1500}", agent_version="support-v3",
                                       payload=payload, **({"event_id": f"probe-{i:09d}"} if is_probe else {}))
                    if is_probe:
                        probe.add(event.event_id, emitted, emitted_ns)
                        probes += 1
                    accepted += await producer.emit(event)
                    i += 1
                emit_late = max(emit_late, (time.perf_counter() - t0) - i / rate)
                await asyncio.sleep(0.002)
            emit_s = time.perf_counter() - t0
            await producer.flush()
            stats = producer.stats()
        wait_deadline = time.monotonic() + 60
        while probe.pending and time.monotonic() < wait_deadline:
            await asyncio.sleep(0.05)
        probe.stop.set()
        probe.join(timeout=30)
        missing = len(probe.pending)
    finally:
        ingest.terminate()
        try:
            ingest.wait(timeout=10)
        except subprocess.TimeoutExpired:
            ingest.kill()
            ingest.wait(timeout=10)
        ingest_log.close()
    count = await asyncio.to_thread(bronze_count, lake)
    await bus_log.close()
    lags = sorted(int(x * 1e9) for x in probe.lags)
    table = open_catalog(lake).load_table(BRONZE)
    commits = len(table.metadata.snapshots)
    committed = sorted(commit_lags(table, probe.emitted_ns))
    shutil.rmtree(lake, ignore_errors=True)
    out = {"bus": bus.label, "rate": rate, "seconds": seconds, "emitted": total, "emit_s": round(emit_s, 2),
           "accepted": accepted, "dropped": sum(stats.dropped.values()), "bronze_rows": count, "commits": commits,
           "probes": probes, "probes_missing": missing, "ingest_batch": batch, "poll_ms": poll_ms,
           "probe_scans": probe.scans, "probe_scan_ms_mean": round(probe.scan_s / max(probe.scans, 1) * 1000, 1),
           "emit_late_max_ms": round(emit_late * 1000, 1)}
    if committed:
        out.update({"commit_p50_ms": round(percentile(committed, 50) / 1e6, 1),
                    "commit_p99_ms": round(percentile(committed, 99) / 1e6, 1),
                    "commit_max_ms": round(committed[-1] / 1e6, 1), "commit_n": len(committed)})
    if lags:
        out.update({"lag_p50_ms": round(percentile(lags, 50) / 1e6, 1), "lag_p99_ms": round(percentile(lags, 99) / 1e6, 1),
                    "lag_max_ms": round(lags[-1] / 1e6, 1), "lag_min_ms": round(lags[0] / 1e6, 1)})
        log(f"  lag p50 {out['lag_p50_ms']:.0f} ms, p99 {out['lag_p99_ms']:.0f} ms, max {out['lag_max_ms']:.0f} ms; "
            f"{count:,} bronze rows, {commits} snapshots, {missing} probes never seen")
    return out


# --------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------


def markdown(results: list[dict[str, Any]], lags: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    v = meta["versions"]
    out = [
        "# Events: bus → Iceberg bronze throughput on one core, emit → queryable lag",
        "",
        (f"Measured {meta['started_utc']}; {meta['events']:,} AgentEvents (8 tenants, 4,000 conversations, one "
         f"UTC day, mean JSON {meta['mean_bytes']:.0f} bytes), {PARTITIONS} bus partitions."),
        "",
        (f"Platform: {meta['platform']}, {meta['cpus']} CPUs ({meta['cpu']}); temp folder on {meta['filesystem']}; "
         f"Python {v['python']}, SQLite {v['sqlite']}, pyiceberg {v['pyiceberg']}, pyarrow {v['pyarrow']}, "
         f"redis-py {v['redis']}, {meta['redis_server']}; load average at start {meta['load_average']}, "
         f"at end {meta['load_average_end']}"),
        "",
        "Command:",
        "",
        "```",
        meta["command"],
        "```",
        "",
        "## Throughput into bronze (one core)",
        "",
        (f"Produce: `partition` + `to_json` + `append` in chunks of {PRODUCE_CHUNK:,} (not pinned). Drain: every "
         f"thread of the bench process pinned to CPU {meta['core']} (`sched_setaffinity`), `BronzeWriter.run_once` "
         "until nothing is pending, into a fresh lake; events/s = N / drain wall time. redis-server is another "
         "process, not pinned. The bench's own generated events are moved out of the cyclic GC's reach "
         "(`gc.freeze()`): an ingest process does not hold them. Goal ≥ 100,000 events/s."),
        "",
        "| bus | produce s | produce events/s | batch | commits | drain s | drain events/s | bronze rows | goal |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        for d in r["drains"]:
            out.append(f"| {r['bus']} | {r['produce_s']:.2f} | {r['produce_events_per_s']:,} | {d['batch']:,} | "
                       f"{d['commits']} | {d['drain_s']:.2f} | **{d['events_per_s']:,}** | {d['bronze_rows']:,} | "
                       f"{'PASS' if d['passed'] else 'MISS'} |")
    out.append("")
    for r in results:
        p = r.get("profile")
        if not p:
            continue
        out += [
            (f"Profile, {r['bus']}, batch {p['batch']:,} (one more drain, same core; `write` called directly under "
             f"cProfile, which inflates the pure-Python parts): bus reads {p['read_s']:.2f} s (wall clock), "
             f"`write` {p['write_cum_s']:.2f} s (profiled)."),
            "",
            "| part of `BronzeWriter.write` | s | share |",
            "|---|---:|---:|",
        ]
        for part in p["parts"]:
            share = f"{part['share_of_write'] * 100:.0f}%" if part["share_of_write"] is not None else "?"
            out.append(f"| {part['part']} | {part['s']:.2f} | {share} |")
        out.append("")
        out.append("Top self time: " + ", ".join(f"`{t['function']}` {t['self_s']:.2f} s" for t in p["top_self"][:8]))
        out.append("")
    if lags:
        out += [
            "## Lag: emit → queryable in bronze",
            "",
            ("Ingest as its own process (`python -m concierge.lakehouse.ingest`, idle sleep 50 ms, `--batch` as "
             "below); `EventProducer` with its defaults (batch 1,000, flush interval 50 ms) in the bench process; "
             f"every {PROBE_EVERY}th event a probe; a thread polls bronze every {lags[0]['poll_ms']} ms (fresh "
             "`load_table`, and when the snapshot changed a scan filtered on the pending probe ids); arrival = "
             "the start of the `load_table` whose scan first returns the probe (a query started then would see "
             "it; the poll interval and the time the previous scan took are part of the lag). \"To commit\" is "
             "measured afterwards without polling: the timestamp of the first snapshot holding the probe (set by "
             "the writer just before its catalog commit) minus the emit time. Both processes share the "
             "machine's CPUs."),
            "",
            ("| bus | rate/s × s | ingest batch | bronze rows | snapshots | probes | lag p50 ms | lag p99 ms | "
             "lag max ms | probe scan ms (mean) | to commit p50 ms | to commit p99 ms | to commit max ms |"),
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in lags:
            out.append(f"| {r['bus']} | {r['rate']:,.0f} × {r['seconds']:g} | {r['ingest_batch']:,} | "
                       f"{r['bronze_rows']:,} | {r['commits']} | {r['probes'] - r['probes_missing']}/{r['probes']} | "
                       f"{r.get('lag_p50_ms', float('nan')):,.0f} | **{r.get('lag_p99_ms', float('nan')):,.0f}** | "
                       f"{r.get('lag_max_ms', float('nan')):,.0f} | {r['probe_scan_ms_mean']:.0f} | "
                       f"{r.get('commit_p50_ms', float('nan')):,.0f} | {r.get('commit_p99_ms', float('nan')):,.0f} | "
                       f"{r.get('commit_max_ms', float('nan')):,.0f} |")
        out.append("")
        out.append("Emitted vs accepted: " + "; ".join(
            f"{r['bus']}: {r['emitted']:,} emitted in {r['emit_s']:.1f} s, {r['accepted']:,} accepted, "
            f"{r['dropped']} dropped, emit loop at most {r['emit_late_max_ms']:.0f} ms behind schedule" for r in lags) + ".")
        out.append("")
    return "\n".join(out)


# --------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=200_000, help="events per bus for throughput (default 200,000)")
    ap.add_argument("--batch", type=int, nargs="+", default=[50_000, 10_000],
                    help="BronzeWriter batch sizes to drain with (default 50000 10000)")
    ap.add_argument("--rate", type=float, default=2000, help="lag phase: events emitted per second (default 2,000)")
    ap.add_argument("--seconds", type=float, default=10, help="lag phase: seconds of emitting (default 10)")
    ap.add_argument("--lag-batch", type=int, default=10_000, help="lag phase: the ingest job's --batch (default 10,000)")
    ap.add_argument("--poll-ms", type=int, default=20, help="lag phase: probe poll interval (default 20 ms)")
    ap.add_argument("--core", type=int, default=None, help="CPU to pin the drain to (default: the last allowed)")
    ap.add_argument("--skip-redis", action="store_true", help="only the embedded log")
    ap.add_argument("--skip-lag", action="store_true", help="only the throughput phase")
    ap.add_argument("--no-profile", action="store_true", help="do not profile a bus that misses the goal")
    ap.add_argument("--seed", type=int, default=20261124)
    ap.add_argument("--json", action="store_true", help="print the results and the run metadata as JSON")
    ap.add_argument("--write-results", action="store_true", help=f"also write {RESULTS_MD.relative_to(REPO)}")
    args = ap.parse_args()
    if args.events < 1 or min(args.batch) < 1 or args.rate <= 0 or args.seconds <= 0:
        ap.error("--events, --batch, --rate and --seconds must be positive")

    t_start = time.perf_counter()
    started = datetime.datetime.now(datetime.UTC)
    load_average = " ".join(f"{x:.2f}" for x in os.getloadavg())
    core = args.core if args.core is not None else max(os.sched_getaffinity(0))
    log(f"generating {args.events:,} events")
    events = make_events(args.events, args.seed)
    # The bench's own 200k pydantic events are not part of an ingest process: keep the cyclic GC
    # from rescanning them on every collection (that alone adds ~200 ms stalls to the drain).
    gc.freeze()
    mean_bytes = sum(len(e.to_json()) for e in events[:5000]) / min(len(events), 5000)
    log(f"  mean JSON {mean_bytes:.0f} bytes")
    work = Path(tempfile.mkdtemp(prefix="concierge-bench-events-"))
    redis = None
    redis_version = "redis-server not run"
    try:
        kinds = ["embedded"]
        if not args.skip_redis:
            redis = RedisServer()
            kinds.append("redis")
            redis_version = subprocess.run([redis.binary, "--version"], check=False, capture_output=True, text=True).stdout.split(" v=")[0:2]
            redis_version = "redis-server " + (redis_version[1].split()[0] if len(redis_version) > 1 else "?")
        buses = [Bus(kind, work, redis) for kind in kinds]

        async def run_all() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
            results = [await throughput(bus, events, args.batch, core, work, not args.no_profile) for bus in buses]
            lags = [] if args.skip_lag else [
                await lag(bus, args.rate, args.seconds, args.lag_batch, args.poll_ms, work, args.seed) for bus in buses]
            return results, lags

        results, lags = asyncio.run(run_all())
    finally:
        if redis is not None:
            redis.stop()
        shutil.rmtree(work, ignore_errors=True)
    elapsed = time.perf_counter() - t_start
    meta: dict[str, Any] = {
        "started_utc": started.strftime("%Y-%m-%d %H:%M UTC"),
        "platform": f"{platform.system()} {platform.release()} {platform.machine()}",
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "core": core,
        "filesystem": filesystem(Path(tempfile.gettempdir()).resolve()),
        "load_average": load_average,
        "load_average_end": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "versions": versions(("concierge", "pyiceberg", "pyarrow", "redis")),
        "redis_server": redis_version,
        "command": command_line(),
        "events": args.events,
        "mean_bytes": round(mean_bytes, 1),
        "elapsed_s": round(elapsed, 1),
    }
    text = markdown(results, lags, meta)
    if args.json:
        print(json.dumps({"meta": meta, "throughput": results, "lag": lags}, indent=2), flush=True)
    else:
        print(text, flush=True)
    if args.write_results:
        RESULTS_MD.parent.mkdir(parents=True, exist_ok=True)
        RESULTS_MD.write_text(text)
        log(f"wrote {RESULTS_MD.relative_to(REPO)}")
    log(f"bench took {elapsed:.1f} s")


if __name__ == "__main__":
    main()
