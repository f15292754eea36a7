"""A process that uses the vector index and then writes Iceberg does not crash.

usearch bundles native libraries that, when loaded before pyarrow, break pyarrow's Parquet
writer in the same process (a segfault inside pyiceberg's file statistics). `concierge serve`
and the CLI do both, so this runs the sequence in a child process and checks it exits cleanly.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_vector_search_then_an_iceberg_append_in_one_process(tmp_path):
    script = textwrap.dedent(f"""
        import numpy as np
        from concierge.retrieval.vector_index import VectorIndex
        index = VectorIndex(dim=8)
        vectors = np.random.default_rng(1).random((50, 8), dtype=np.float32)
        index.add(np.arange(50), vectors / np.linalg.norm(vectors, axis=1, keepdims=True))
        index.search(vectors[0] / np.linalg.norm(vectors[0]), 3)

        from concierge.cli import app
        from typer.testing import CliRunner
        import asyncio
        from concierge.core.events import AgentEvent, EventType
        from concierge.events.bus import open_log

        async def produce():
            log = open_log("embedded:{tmp_path}/events.db", partitions=2)
            events = [AgentEvent(type=EventType.MESSAGE_RECEIVED, tenant="t", conversation_id=f"c{{i}}",
                                 payload={{"text": "hi"}}) for i in range(20)]
            await log.append([(i % 2, e.to_json()) for i, e in enumerate(events)])
            await log.close()
        asyncio.run(produce())
        import os
        os.environ["CONCIERGE_EVENTS__BUS"] = "embedded:{tmp_path}/events.db"
        os.environ["CONCIERGE_EVENTS__PARTITIONS"] = "2"
        result = CliRunner().invoke(app, ["lake", "ingest", "--lake", "{tmp_path}/lake"])
        assert result.exit_code == 0, result.output
        print(result.output)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert "bronze: 20 new events" in done.stdout
