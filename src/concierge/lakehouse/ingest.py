"""The ingestion job: bus → bronze, for as long as it runs (or until the bus is drained).

`python -m concierge.lakehouse.ingest --lake .concierge/lake --bus embedded:.concierge/events.db`
runs it as its own process, which is how it is deployed and how the crash test kills it: any
number of `kill -9` and restarts leave bronze with every distinct event exactly once.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

from pyiceberg.catalog import Catalog

from ..events.bus import EventLog, open_log
from .bronze import BronzeWriter
from .catalog import open_catalog


async def ingest(lake: Path | str | Catalog, log: EventLog, *, batch_size: int = 10_000, until_drained: bool = False,
                 progress: bool = False) -> int:
    """Move events from `log` into bronze; returns how many new events this run wrote."""
    catalog = lake if isinstance(lake, Catalog) else open_catalog(lake)
    writer = BronzeWriter(catalog, log, batch_size=batch_size)
    await asyncio.to_thread(writer.load)
    if progress:
        print(f"ready offsets={sum(writer.offsets.values())}", flush=True)
    written = 0
    stop = asyncio.Event()
    while not stop.is_set():
        count = await writer.run_once()
        written += count
        if progress and count:
            print(f"committed {count} total={written}", flush=True)
        if count == 0 and not await writer.pending():
            if until_drained:
                break
            await asyncio.sleep(0.05)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lake", required=True, type=Path, help="the lake folder (catalog and warehouse)")
    parser.add_argument("--bus", required=True, help="embedded:PATH or redis://host:6379/0")
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--until-drained", action="store_true", help="exit once the bus has nothing new")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    log = open_log(args.bus, partitions=args.partitions)

    async def run() -> int:
        try:
            return await ingest(args.lake, log, batch_size=args.batch, until_drained=args.until_drained,
                                progress=True)
        finally:
            await log.close()

    written = asyncio.run(run())
    print(f"done written={written} seconds={time.perf_counter() - started:.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
