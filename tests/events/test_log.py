"""The EventLog contract, run against the embedded SQLite log and Redis Streams, then each one's own promises."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio

from concierge.core.errors import ValidationError
from concierge.events.bus import EventLog, Record
from concierge.events.log import EmbeddedLog
from concierge.events.redis_streams import SEQ_BITS, RedisStreamLog, decode_offset, encode_id
from concierge.testing.redis import RedisServer

PARTITIONS = 4


@pytest.fixture(params=["embedded", "redis"])
async def log(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    if request.param == "embedded":
        made: Any = EmbeddedLog(tmp_path / "events.db", partitions=PARTITIONS, poll_ms=2)
    else:  # the async redis_client fixture cannot be asked for from here: make the same flushed client
        server: RedisServer = request.getfixturevalue("redis_server")
        client = redis.asyncio.from_url(server.url)
        await client.flushdb()
        made = RedisStreamLog(client, partitions=PARTITIONS, close_client=True)
    try:
        yield made
    finally:
        await made.close()


def _data(records: list[Record]) -> list[bytes]:
    return [r.data for r in records]


# ---- the shared contract -------------------------------------------------------------------------------


async def test_append_returns_increasing_offsets_and_read_keeps_order(log: EventLog) -> None:
    offsets = await log.append([(0, b"a"), (1, b"x"), (0, b"b"), (0, b"c")])
    assert len(offsets) == 4
    assert offsets[0] < offsets[2] < offsets[3]
    records = await log.read(0, 0, 10)
    assert _data(records) == [b"a", b"b", b"c"]
    assert [r.offset for r in records] == [offsets[0], offsets[2], offsets[3]]
    assert all(r.partition == 0 for r in records)
    more = await log.append([(0, b"d")])
    assert more[0] > offsets[3]


async def test_read_after_an_offset_and_limit(log: EventLog) -> None:
    offsets = await log.append([(2, bytes([i])) for i in range(5)])
    assert _data(await log.read(2, offsets[1], 10)) == [bytes([2]), bytes([3]), bytes([4])]
    assert _data(await log.read(2, offsets[1], 2)) == [bytes([2]), bytes([3])]
    assert await log.read(2, offsets[-1], 10) == []


async def test_partitions_are_independent(log: EventLog) -> None:
    await log.append([(0, b"zero"), (1, b"one"), (3, b"three")])
    assert _data(await log.read(1, 0, 10)) == [b"one"]
    assert await log.read(2, 0, 10) == []
    assert _data(await log.read(3, 0, 10)) == [b"three"]


async def test_end_offsets(log: EventLog) -> None:
    assert await log.end_offsets() == dict.fromkeys(range(PARTITIONS), 0)
    offsets = await log.append([(0, b"a"), (0, b"b"), (3, b"c")])
    assert await log.end_offsets() == {0: offsets[1], 1: 0, 2: 0, 3: offsets[2]}


async def test_empty_data_and_empty_batch(log: EventLog) -> None:
    assert await log.append([]) == []
    await log.append([(1, b"")])
    assert _data(await log.read(1, 0, 10)) == [b""]


async def test_group_delivers_once_and_ack_ends_it(log: EventLog) -> None:
    await log.append([(p, f"{p}-{i}".encode()) for i in range(3) for p in range(PARTITIONS)])
    first = await log.group_read("bronze", "c1", 100)
    assert sorted(_data(first)) == sorted(f"{p}-{i}".encode() for i in range(3) for p in range(PARTITIONS))
    for p in range(PARTITIONS):  # each partition's records come in order
        assert [r.data for r in first if r.partition == p] == [f"{p}-{i}".encode() for i in range(3)]
    assert await log.group_read("bronze", "c1", 100) == []  # pending, not redelivered
    await log.ack("bronze", first)
    assert await log.group_read("bronze", "c1", 100) == []
    assert await log.reclaim("bronze", "c2", 0, 100) == []  # acked: nothing left to take over
    await log.append([(1, b"late")])
    assert _data(await log.group_read("bronze", "c1", 100)) == [b"late"]
    assert len(await log.group_read("other", "c1", 100)) == 3 * PARTITIONS + 1  # groups are independent


async def test_group_read_caps_at_count(log: EventLog) -> None:
    await log.append([(p, b"x") for p in range(PARTITIONS) for _ in range(5)])
    seen: list[Record] = []
    while batch := await log.group_read("g", "c", 3):
        assert len(batch) <= 3
        seen.extend(batch)
    assert len(seen) == 5 * PARTITIONS
    assert len({(r.partition, r.offset) for r in seen}) == len(seen)


async def test_group_read_blocks_until_a_record_arrives(log: EventLog) -> None:
    started = time.monotonic()
    assert await log.group_read("g", "c", 10, block_ms=100) == []
    assert time.monotonic() - started >= 0.09

    async def later() -> None:
        await asyncio.sleep(0.05)
        await log.append([(2, b"wake")])

    writer = asyncio.create_task(later())
    started = time.monotonic()
    records = await log.group_read("g", "c", 10, block_ms=5_000)
    await writer
    assert _data(records) == [b"wake"]
    assert time.monotonic() - started < 2


async def test_reclaim_takes_over_a_crashed_consumers_records(log: EventLog) -> None:
    await log.append([(0, b"a"), (1, b"b"), (0, b"c")])
    taken = await log.group_read("g", "crashed", 10)
    assert len(taken) == 3
    assert await log.reclaim("g", "rescuer", 200, 10) == []  # not idle long enough yet
    await asyncio.sleep(0.06)
    assert await log.reclaim("g", "crashed", 50, 10) == []  # never one's own
    rescued = await log.reclaim("g", "rescuer", 50, 2)
    assert len(rescued) == 2
    rescued += await log.reclaim("g", "rescuer", 50, 10)
    assert sorted(_data(rescued)) == [b"a", b"b", b"c"]
    assert await log.reclaim("g", "third", 50, 10) == []  # just claimed: idle time starts again
    await log.ack("g", rescued)
    await asyncio.sleep(0.06)
    assert await log.reclaim("g", "third", 50, 10) == []
    assert await log.group_read("g", "rescuer", 10) == []


async def test_two_consumers_split_a_group_without_overlap(log: EventLog) -> None:
    await log.append([(i % PARTITIONS, str(i).encode()) for i in range(200)])
    got: dict[str, list[Record]] = {"c1": [], "c2": []}

    async def consume(name: str) -> None:
        while batch := await log.group_read("g", name, 7):
            got[name].extend(batch)
            await log.ack("g", batch)
            await asyncio.sleep(0)

    await asyncio.gather(consume("c1"), consume("c2"))
    keys1 = {(r.partition, r.offset) for r in got["c1"]}
    keys2 = {(r.partition, r.offset) for r in got["c2"]}
    assert not keys1 & keys2
    assert sorted(int(d) for d in _data(got["c1"] + got["c2"])) == list(range(200))


@pytest.mark.parametrize("bad", [-1, PARTITIONS, True, "0", 1.0])
async def test_bad_partition_is_refused_and_nothing_is_written(log: EventLog, bad: Any) -> None:
    with pytest.raises(ValidationError, match="partition"):
        await log.append([(0, b"ok"), (bad, b"x")])
    with pytest.raises(ValidationError, match="partition"):
        await log.read(bad, 0, 10)
    assert await log.end_offsets() == dict.fromkeys(range(PARTITIONS), 0)


async def test_bad_arguments_are_refused(log: EventLog) -> None:
    for call in (log.append([(0, "text")]), log.append([(0,)]), log.read(0, -1, 10), log.read(0, 0, 0),  # type: ignore[list-item]
                 log.group_read("", "c", 1), log.group_read("g", "c", 0), log.group_read("g", "c", 1, -5),
                 log.reclaim("g", "", 0, 1), log.reclaim("g", "c", -1, 1), log.ack("g", [(0, 1)])):  # type: ignore[list-item]
        with pytest.raises(ValidationError):
            await call


@pytest.mark.parametrize("partitions", [0, -3, True, 2.0])
async def test_partition_count_must_be_positive(tmp_path: Path, partitions: Any) -> None:
    with pytest.raises(ValidationError, match="partitions"):
        EmbeddedLog(tmp_path / "x.db", partitions=partitions)
    with pytest.raises(ValidationError, match="partitions"):
        RedisStreamLog(redis.asyncio.Redis(), partitions=partitions)


# ---- embedded only -------------------------------------------------------------------------------------


async def test_embedded_offsets_start_at_one_and_are_contiguous(tmp_path: Path) -> None:
    log = EmbeddedLog(tmp_path / "e.db", partitions=2)
    assert await log.append([(0, b"a"), (1, b"b"), (0, b"c")]) == [1, 1, 2]
    assert await log.append([(0, b"d")]) == [3]
    await log.close()


async def test_embedded_refuses_another_partition_count(tmp_path: Path) -> None:
    await EmbeddedLog(tmp_path / "e.db", partitions=4).close()
    with pytest.raises(ValidationError, match="4 partitions, not 8") as caught:
        EmbeddedLog(tmp_path / "e.db", partitions=8)
    assert caught.value.hint is not None and "partitions=4" in caught.value.hint


async def test_embedded_survives_close_and_reopen(tmp_path: Path) -> None:
    log = EmbeddedLog(tmp_path / "e.db", partitions=2)
    await log.append([(0, b"a"), (1, b"b")])
    pending = await log.group_read("g", "c", 1)
    await log.close()
    with pytest.raises(ValidationError, match="closed"):
        await log.read(0, 0, 1)
    log = EmbeddedLog(tmp_path / "e.db", partitions=2)
    assert _data(await log.read(0, 0, 10)) == [b"a"]
    assert await log.end_offsets() == {0: 1, 1: 1}
    assert await log.append([(0, b"c")]) == [2]
    rest = await log.group_read("g", "c", 10)  # the group kept its place and its pending record
    assert {(r.partition, r.offset) for r in rest} == {(0, 1), (0, 2), (1, 1)} - {(pending[0].partition, 1)}
    await log.ack("g", rest)
    assert _data(await log.reclaim("g", "other", 0, 10)) == _data(pending)
    await log.close()


async def test_embedded_commits_the_contiguous_acked_prefix(tmp_path: Path) -> None:
    path = tmp_path / "e.db"
    log = EmbeddedLog(path, partitions=1)
    await log.append([(0, bytes([i])) for i in range(5)])
    records = await log.group_read("g", "c", 10)

    def committed() -> int:
        with sqlite3.connect(path) as conn:
            return int(conn.execute('SELECT committed FROM group_offsets WHERE "group" = ?', ("g",)).fetchone()[0])

    await log.ack("g", [records[1], records[2]])
    assert committed() == 0  # offset 1 is still pending
    assert await log.group_read("g", "c", 10) == []  # acked above the gap: not delivered again
    await log.ack("g", [records[0]])
    assert committed() == 3
    await log.ack("g", records[3:])
    assert committed() == 5
    await log.close()


async def test_embedded_trim_keeps_offsets_moving_forward(tmp_path: Path) -> None:
    log = EmbeddedLog(tmp_path / "e.db", partitions=1)
    await log.append([(0, b"a"), (0, b"b")])
    await log.trim({0: 3})
    assert await log.read(0, 0, 10) == []
    assert await log.end_offsets() == {0: 2}
    assert await log.append([(0, b"c")]) == [3]
    assert _data(await log.group_read("g", "c", 10)) == [b"c"]
    await log.close()


_WRITER = """
import asyncio, sys
from concierge.events.log import EmbeddedLog
async def main():
    log = EmbeddedLog(sys.argv[1], partitions=3)
    print("ready", flush=True)
    sys.stdin.readline()  # a start barrier, so the writers really overlap
    for batch in range(int(sys.argv[3])):
        await log.append([(i % 3, f"{sys.argv[2]}-{batch}-{i}".encode()) for i in range(30)])
    await log.close()
asyncio.run(main())
"""


async def _writers(path: Path, names: list[str], batches: int) -> list[asyncio.subprocess.Process]:
    """Writer processes, started together once all have opened the log."""
    procs = [await asyncio.create_subprocess_exec(sys.executable, "-c", _WRITER, str(path), name, str(batches),
                                                  stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
             for name in names]
    for proc in procs:
        assert proc.stdout is not None
        assert await asyncio.wait_for(proc.stdout.readline(), 30) == b"ready\n"
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")
        await proc.stdin.drain()
    return procs


async def test_embedded_two_processes_append_to_one_file(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    await EmbeddedLog(path, partitions=3).close()  # created first, so neither writer races to make the schema
    writers = await _writers(path, ["w1", "w2"], 100)
    assert await asyncio.wait_for(asyncio.gather(*(w.wait() for w in writers)), 60) == [0, 0]
    log = EmbeddedLog(path, partitions=3)
    seen: list[bytes] = []
    for p in range(3):
        records = await log.read(p, 0, 10_000)
        assert [r.offset for r in records] == list(range(1, len(records) + 1))
        seen += _data(records)
    assert sorted(seen) == sorted(f"{w}-{b}-{i}".encode() for w in ("w1", "w2") for b in range(100) for i in range(30))
    await log.close()


async def test_embedded_reader_sees_another_process_writing(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    log = EmbeddedLog(path, partitions=3)
    (writer,) = await _writers(path, ["w"], 20)
    got = await log.group_read("g", "reader", 10, block_ms=20_000)  # polls while the other process writes
    assert got and all(r.data.startswith(b"w-") for r in got)
    assert await asyncio.wait_for(writer.wait(), 60) == 0
    assert sum((await log.end_offsets()).values()) == 600
    assert len(got) + len(await log.group_read("g", "reader", 1000)) == 600
    await log.close()


# ---- Redis only ----------------------------------------------------------------------------------------


def test_redis_offsets_round_trip() -> None:
    for stream_id in ("0-0", "0-1", "1700000000123-0", "1700000000123-4194303"):
        assert decode_offset(encode_id(stream_id)) == stream_id
    assert encode_id(b"5-3") == 5 << SEQ_BITS | 3
    assert encode_id("1-0") > encode_id("0-4194303")
    with pytest.raises(ValidationError, match="sequence"):
        encode_id(f"1-{1 << SEQ_BITS}")


async def test_redis_from_url_owns_its_client(redis_server: RedisServer) -> None:
    log = RedisStreamLog.from_url(redis_server.url, partitions=2, prefix="t:from_url:")
    offsets = await log.append([(1, b"hello")])
    assert _data(await log.read(1, 0, 10)) == [b"hello"]
    assert await log.end_offsets() == {0: 0, 1: offsets[0]}
    await log.close()
    with pytest.raises(ValidationError, match="URL"):
        RedisStreamLog.from_url("http://localhost")


async def test_redis_lent_client_stays_open_and_trim_works(redis_client: redis.asyncio.Redis) -> None:
    log = RedisStreamLog(redis_client, partitions=1, maxlen=1000)
    offsets = await log.append([(0, b"a"), (0, b"b"), (0, b"c")])
    await log.trim({0: offsets[1]})
    assert _data(await log.read(0, 0, 10)) == [b"b", b"c"]
    await log.close()
    assert await redis_client.ping()
