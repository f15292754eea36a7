"""Crash test: the ingestion process is `kill -9`ed at 20 random points; bronze ends exactly right.

200,000 events go on the bus with producer retries injected (the same event twice, at two
offsets). The ingestion job runs as its own process and is killed with SIGKILL at random
moments while it works, then restarted; a last run drains the bus. Bronze must then hold exactly
the distinct events produced: set equality, none lost, none twice. On the embedded log and on
Redis Streams.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from concierge.core.events import partition_of
from concierge.events.bus import open_log
from concierge.lakehouse.catalog import BRONZE, open_catalog

EVENTS = 200_000
KILLS = 20
PARTITIONS = 8
DUPLICATE_RATE = 0.02


def _produce(spec: str, seed: int) -> set[str]:
    """Put the events on the bus in batches; returns the distinct ids produced."""
    rng = random.Random(seed)
    now = datetime.now(UTC).isoformat()
    ids: set[str] = set()

    async def run() -> None:
        log = open_log(spec, partitions=PARTITIONS)
        try:
            batch: list[tuple[int, bytes]] = []
            for i in range(EVENTS):
                tenant, conversation = f"t{i % 7}", f"c{i % 5003}"
                event_id = uuid.UUID(int=rng.getrandbits(128)).hex
                ids.add(event_id)
                data = json.dumps({"schema_version": 1, "event_id": event_id, "type": "message_received",
                                   "ts": now, "tenant": tenant, "conversation_id": conversation, "turn": 1,
                                   "user_id": f"u{i % 911}", "payload": {"text": f"message {i}"}}).encode()
                record = (partition_of(tenant, conversation, PARTITIONS), data)
                batch.append(record)
                if rng.random() < DUPLICATE_RATE:  # a producer retry after a lost acknowledgement
                    batch.append(record)
                if len(batch) >= 10_000:
                    await log.append(batch)
                    batch = []
            if batch:
                await log.append(batch)
        finally:
            await log.close()

    asyncio.run(run())
    return ids


def _start(lake: Path, spec: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "concierge.lakehouse.ingest", "--lake", str(lake), "--bus", spec,
         "--partitions", str(PARTITIONS), "--batch", "2000", "--until-drained"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _wait_ready(process: subprocess.Popen[str], timeout_s: float = 120) -> None:
    assert process.stdout is not None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if line.startswith("ready"):
            return
        if not line and process.poll() is not None:
            raise AssertionError(f"the ingestion process exited with {process.returncode} before it was ready")
    raise AssertionError("the ingestion process did not get ready")


def _crash_and_recover(lake: Path, spec: str, seed: int) -> int:
    rng = random.Random(seed)
    killed = 0
    for _ in range(KILLS):
        process = _start(lake, spec)
        _wait_ready(process)
        time.sleep(rng.uniform(0.0, 0.8))  # somewhere in a read, a Parquet write or the catalog commit
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            killed += 1
        process.wait(30)
        assert process.stdout is not None
        process.stdout.close()
    final = _start(lake, spec)
    output, _ = final.communicate(timeout=600)
    assert final.returncode == 0, output
    return killed


def _bronze_ids(lake: Path, produced: set[str], killed: int, bus: str) -> list[str]:
    """Bronze's event ids, with a printed summary of what the crash run left."""
    table = open_catalog(lake).load_table(BRONZE)
    ids = table.scan(selected_fields=("event_id",)).to_arrow().column("event_id").to_pylist()
    distinct = set(ids)
    print(f"\n{bus}: {len(produced):,} distinct events produced (+{DUPLICATE_RATE:.0%} retried), "
          f"{killed} kill -9s mid-ingestion; bronze rows {len(ids):,}, lost {len(produced - distinct)}, "
          f"duplicated {len(ids) - len(distinct)}, unexpected {len(distinct - produced)}")
    return ids


@pytest.mark.timeout(900)
def test_embedded_log_kill9_exactly_once(tmp_path: Path) -> None:
    spec = f"embedded:{tmp_path / 'events.db'}"
    produced = _produce(spec, seed=1)
    killed = _crash_and_recover(tmp_path / "lake", spec, seed=2)
    ids = _bronze_ids(tmp_path / "lake", produced, killed, "embedded log")
    assert killed >= KILLS // 2, "too few kills landed while the job was working"
    assert len(ids) == len(set(ids)), "an event is in bronze twice"
    assert set(ids) == produced, "bronze lost an event or holds one nobody produced"


@pytest.mark.timeout(900)
def test_redis_streams_kill9_exactly_once(tmp_path: Path, redis_server) -> None:
    spec = redis_server.url
    import redis

    redis.Redis.from_url(spec).flushdb()
    produced = _produce(spec, seed=3)
    killed = _crash_and_recover(tmp_path / "lake", spec, seed=4)
    ids = _bronze_ids(tmp_path / "lake", produced, killed, "Redis Streams")
    assert killed >= KILLS // 2, "too few kills landed while the job was working"
    assert len(ids) == len(set(ids)), "an event is in bronze twice"
    assert set(ids) == produced, "bronze lost an event or holds one nobody produced"
