#!/usr/bin/env python3
"""Vector index: build time, recall@10 against exact search, query latency, and latency during a rebuild.

    .venv/bin/python bench/retrieval.py                         # 100,000 × 384 (a few minutes on 2 cores)
    .venv/bin/python bench/retrieval.py --reindex               # also p99 during a background rebuild
    .venv/bin/python bench/retrieval.py --vectors 20000 --dim 64 --queries 500   # quick check
    .venv/bin/python bench/retrieval.py --vectors 1000000       # the 1M run: outside CI (~1.5 GiB of
                                                                # vectors, tens of minutes to build)
    .venv/bin/python bench/retrieval.py --write-results         # also writes bench/results/retrieval.md
                                                                # (retrieval_reindex.md with --reindex)

The corpus is generated, seeded: `--clusters` random unit centres, each vector a centre plus
Gaussian noise (total norm `--noise` relative to the centre), L2-normalised — embedding-like
data with neighbourhoods, dim 384 by default like all-MiniLM-L6-v2. Queries come from the same
distribution and are not in the index.

Rows:

* build: `VectorIndex.add` of the whole corpus with all cores (usearch `threads=0`);
* recall@10: ANN top-10 against usearch's exact (brute-force) top-10, over `--recall-queries`;
* single-query latency: `VectorIndex.search(q, 10)` one query at a time from one thread,
  timed with `time.perf_counter_ns` after a warm-up.

`--reindex`: p99 single-query latency through `BlueGreenIndex.search` at rest, then again
while `BlueGreenIndex.rebuild` builds the same corpus in a background thread with one usearch
thread (`build_from`, `threads=1`); queries are issued back to back from the main thread until
the rebuild has swapped. Goal: p99 during ≤ 1.2 × p99 at rest.

Progress goes to stderr; the report (Markdown) to stdout.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
from benchkit import command_line, cpu_model, fmt_us, log, summarise, versions

from concierge.retrieval.blue_green import BlueGreenIndex, build_from
from concierge.retrieval.vector_index import VectorIndex, recall_at_k

REPO = Path(__file__).resolve().parents[1]

RESULTS_MD = REPO / "bench" / "results" / "retrieval.md"
RESULTS_REINDEX_MD = REPO / "bench" / "results" / "retrieval_reindex.md"
K = 10
REINDEX_GOAL = 1.2


# --------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------


def unit_rows(m: np.ndarray) -> np.ndarray:
    return (m / np.linalg.norm(m, axis=1, keepdims=True)).astype(np.float32)


def clustered(rng: np.random.Generator, centres: np.ndarray, n: int, noise: float,
              chunk: int = 100_000) -> np.ndarray:
    """n vectors around random centres, generated in chunks so 1M × 384 stays at its final size."""
    dim = centres.shape[1]
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        picks = rng.integers(0, len(centres), m)
        noise_rows = rng.standard_normal((m, dim), dtype=np.float32) * np.float32(noise / np.sqrt(dim))
        out[start:start + m] = unit_rows(centres[picks] + noise_rows)
    return out


# --------------------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------------------


def time_queries(search: Any, queries: np.ndarray, warmup: int) -> list[int]:
    clock = time.perf_counter_ns
    for q in queries[:warmup]:
        search(q, K)
    samples: list[int] = []
    for q in queries:
        t0 = clock()
        search(q, K)
        samples.append(clock() - t0)
    return samples


def measure_reindex(index: VectorIndex, keys: np.ndarray, corpus: np.ndarray, queries: np.ndarray,
                    warmup: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """p99 at rest, then p99 while a full rebuild runs in the background and swaps."""
    bg = BlueGreenIndex(index)
    rest = time_queries(bg.search, queries, warmup)
    log(f"  at rest: p99 {summarise('', rest)['p99_us']:,.0f} µs; starting rebuild (threads=1)")

    clock = time.perf_counter_ns
    during: list[int] = []
    started = time.perf_counter()
    future = bg.rebuild(build_from(keys, corpus, dim=index.dim, threads=1))
    i = 0
    while not future.done():
        q = queries[i % len(queries)]
        i += 1
        t0 = clock()
        bg.search(q, K)
        during.append(clock() - t0)
    rebuild_s = time.perf_counter() - started
    new = future.result()
    if bg.active is not new or bg.generation != 1 or len(new) != len(corpus):
        raise AssertionError("rebuild did not swap in a complete index")
    answered_by_new = len(bg.search(queries[0], K))
    log(f"  rebuild + swap took {rebuild_s:.1f} s, {len(during):,} queries answered meanwhile")

    rows = [
        summarise("query through BlueGreenIndex, at rest", rest, "same queries, same index"),
        summarise("query during background rebuild", during,
                  f"{len(during):,} back-to-back queries until the swap"),
    ]
    ratio = rows[1]["p99_us"] / rows[0]["p99_us"]
    info = {"rebuild_s": round(rebuild_s, 1), "queries_during": len(during), "p99_ratio": ratio,
            "goal": REINDEX_GOAL, "passed": ratio <= REINDEX_GOAL, "answered_after_swap": answered_by_new}
    return rows, info


# --------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------


HEADERS = ["", "n", "p50 µs", "p99 µs", "mean µs", "max µs", ""]


def row_cells(r: dict[str, Any]) -> list[str]:
    return [r["row"], f"{r['n']:,}", fmt_us(r["p50_us"]), fmt_us(r["p99_us"]), fmt_us(r["mean_us"]),
            fmt_us(r["max_us"]), r["note"]]


def markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    v = meta["versions"]
    out = [
        "# Vector index: build, recall@10, query latency" + (", latency during a rebuild"
                                                            if meta.get("reindex") else ""),
        "",
        (f"Measured {meta['started_utc']}; {meta['vectors']:,} vectors × dim {meta['dim']} "
         f"({meta['clusters']:,} clusters, noise {meta['noise']}), cosine, f32, HNSW connectivity 16, "
         f"expansion_add 128, expansion_search 64."),
        "",
        (f"Platform: {meta['platform']}, {meta['cpus']} CPUs ({meta['cpu']}); Python {v['python']}, "
         f"usearch {v['usearch']}, numpy {v['numpy']}; load average at start {meta['load_average']}, "
         f"at end {meta['load_average_end']}"),
        "",
        "Command:",
        "",
        "```",
        meta["command"],
        "```",
        "",
        f"- build ({meta['vectors']:,} vectors, all cores): **{meta['build_s']:.1f} s**",
        (f"- recall@{K} against exact search over {meta['recall_queries']:,} queries: "
         f"**{meta['recall_at_10']:.4f}** (exact search took {meta['exact_s']:.1f} s)"),
        "",
        "| " + " | ".join(HEADERS) + " |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        out.append("| " + " | ".join(row_cells(r)) + " |")
    out.append("")
    if meta.get("reindex"):
        ri = meta["reindex"]
        verdict = "PASS" if ri["passed"] else "FAIL"
        out.append(
            f"Reindex: the background rebuild (one usearch thread) took {ri['rebuild_s']:.1f} s; "
            f"{ri['queries_during']:,} queries ran meanwhile. p99 during / p99 at rest = "
            f"**{ri['p99_ratio']:.2f}×** against the goal ≤ {ri['goal']}×: **{verdict}**.")
        out.append("")
    return "\n".join(out)


# --------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vectors", type=int, default=100_000, metavar="N", help="corpus size (default 100,000)")
    ap.add_argument("--dim", type=int, default=384, help="vector dimension (default 384)")
    ap.add_argument("--clusters", type=int, default=1000, help="cluster centres (default 1,000)")
    ap.add_argument("--noise", type=float, default=1.0, help="noise norm relative to the centre (default 1.0)")
    ap.add_argument("--queries", type=int, default=2000, help="timed single queries (default 2,000)")
    ap.add_argument("--recall-queries", type=int, default=500, help="queries for recall@10 (default 500)")
    ap.add_argument("--seed", type=int, default=20261124)
    ap.add_argument("--reindex", action="store_true", help="also measure p99 latency during a rebuild")
    ap.add_argument("--json", action="store_true", help="print the rows and the run metadata as JSON")
    ap.add_argument("--write-results", action="store_true",
                    help=f"also write {RESULTS_MD.relative_to(REPO)} "
                         f"({RESULTS_REINDEX_MD.relative_to(REPO)} with --reindex)")
    args = ap.parse_args()
    if min(args.vectors, args.dim, args.clusters, args.queries, args.recall_queries) < 1:
        ap.error("--vectors, --dim, --clusters, --queries and --recall-queries must be at least 1")

    t_start = time.perf_counter()
    started = datetime.datetime.now(datetime.UTC)
    load_average = " ".join(f"{x:.2f}" for x in os.getloadavg())
    rng = np.random.default_rng(args.seed)
    centres = unit_rows(rng.standard_normal((args.clusters, args.dim), dtype=np.float32))
    log(f"generating {args.vectors:,} × {args.dim} vectors")
    corpus = clustered(rng, centres, args.vectors, args.noise)
    queries = clustered(rng, centres, max(args.queries, args.recall_queries), args.noise)
    keys = np.arange(args.vectors, dtype=np.int64)
    warmup = max(20, args.queries // 10)

    log("building (all cores)")
    index = VectorIndex(args.dim)
    t0 = time.perf_counter()
    index.add(keys, corpus)
    build_s = time.perf_counter() - t0
    log(f"  build took {build_s:.1f} s")

    t0 = time.perf_counter()
    recall = recall_at_k(index, queries[:args.recall_queries], k=K)
    exact_s = time.perf_counter() - t0
    log(f"  recall@{K} = {recall:.4f}")

    rows = [summarise("single query, VectorIndex.search", time_queries(index.search, queries[:args.queries],
                                                                       warmup), f"k={K}, one thread")]
    log(f"  single query: p50 {rows[0]['p50_us']:,.0f} µs, p99 {rows[0]['p99_us']:,.0f} µs")
    reindex: dict[str, Any] | None = None
    if args.reindex:
        log("reindex: p99 at rest, then during a background rebuild")
        more, reindex = measure_reindex(index, keys, corpus, queries[:args.queries], warmup)
        rows += more
    elapsed = time.perf_counter() - t_start

    meta: dict[str, Any] = {
        "started_utc": started.strftime("%Y-%m-%d %H:%M UTC"),
        "platform": f"{platform.system()} {platform.release()} {platform.machine()}",
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "load_average": load_average,
        "load_average_end": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "versions": versions(("concierge", "usearch", "numpy")),
        "command": command_line(),
        "vectors": args.vectors,
        "dim": args.dim,
        "clusters": args.clusters,
        "noise": args.noise,
        "recall_queries": args.recall_queries,
        "build_s": round(build_s, 2),
        "recall_at_10": recall,
        "exact_s": round(exact_s, 2),
        "reindex": reindex,
        "elapsed_s": round(elapsed, 1),
    }
    if args.json:
        print(json.dumps({"meta": meta, "rows": rows}, indent=2), flush=True)
    else:
        print(markdown(rows, meta), flush=True)
    if args.write_results:
        target = RESULTS_REINDEX_MD if args.reindex else RESULTS_MD
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(markdown(rows, meta))
        log(f"wrote {target.relative_to(REPO)}")
    log(f"bench took {elapsed:.1f} s")


if __name__ == "__main__":
    main()
