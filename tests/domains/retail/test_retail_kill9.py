"""A retail write survives a real kill -9 between the store's commit and the ledger's record.

The store runs as its own process over a SQLite file holding a small generated store. A runtime
worker process (`concierge.testing.retail_worker`) makes one write and, with
`--die-after-effect`, SIGKILLs itself when the executor is about to record the write as
succeeded: the store has applied and committed the effect, the ledger still says `attempted`.
A new worker on the same database and session reconciles on its first turn — the write is
re-sent with the same Idempotency-Key, which the store answers from its stored response — and
tells the user. The store's database then equals exactly one application of the action.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from typing import Any

import pytest

from concierge.domains.retail.generator import generate_store
from concierge.domains.retail.store import create_schema, create_store_engine, import_db
from concierge.testing.services import ServiceProcess
from concierge.tools import SqlLedger

from .test_retail_exactly_once import ACTIONS, BACKEND_MODULE, Store, _one_application, _plans

WORKER_MODULE = "concierge.testing.retail_worker"
WORKER_TIMEOUT_S = 60
MODES = ("kill_9", "no_crash")


def _keys(store: Store) -> set[str]:
    return {record["key"] for record in store.key_records()}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('retail-kill9') / 'store.db'}"
    db = generate_store(users=20, orders=60, seed=11)
    engine = create_store_engine(url)
    create_schema(engine)
    import_db(engine, db)
    engine.dispose()
    with ServiceProcess(BACKEND_MODULE, ["--db", url], startup_timeout_s=30.0) as backend:
        yield Store(url, backend, _plans(db, len(MODES)))


def _worker(db_url: str, store: Store, session: str, customer: str, message: str, *,
            call: dict[str, Any] | None = None, die: bool = False) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", WORKER_MODULE, "--db", db_url, "--store", store.backend.url,
           "--session", session, "--message", message, "--customer", customer]
    if call is not None:
        cmd += ["--call", json.dumps(call)]
    if die:
        cmd.append("--die-after-effect")
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = process.communicate(timeout=WORKER_TIMEOUT_S)
    finally:
        if process.poll() is None:  # timed out or interrupted: never leave a worker behind
            process.kill()
            process.communicate()
    return subprocess.CompletedProcess(cmd, process.returncode, out, err)


def _report(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert done.returncode == 0, f"worker failed ({done.returncode}): {done.stderr[-3000:]}"
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


def _ledger(db_url: str, session: str) -> list[dict[str, Any]]:
    """The session's ledger entries as the worker left them, read straight from its database."""

    async def read() -> list[dict[str, Any]]:
        ledger = SqlLedger(db_url)
        try:
            return [e.to_dict() for e in await ledger.entries(session)]
        finally:
            await ledger.close()

    return asyncio.run(read())


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("action", ACTIONS)
def test_one_effect_after_kill_9(store: Store, tmp_path, action: str, mode: str) -> None:
    plan = store.plans[action][MODES.index(mode)]
    arguments = plan["arguments"]
    db_url = f"sqlite:///{tmp_path / 'runtime.db'}"
    session = f"s-{action}-{mode}-{arguments['order_id'].lstrip('#')}"
    before = store.export()
    keys_before = _keys(store)
    expected = _one_application(before, action, arguments)
    call = {"name": action, "arguments": arguments}

    first = _worker(db_url, store, session, plan["user_id"], f"Please do {action} on {arguments['order_id']}.",
                    call=call, die=mode == "kill_9")
    if mode == "kill_9":
        assert first.returncode == -signal.SIGKILL, f"worker did not die by SIGKILL: {first.returncode} " \
                                                    f"{first.stdout[-1000:]} {first.stderr[-3000:]}"
        # The store has committed the effect; the ledger does not know it yet.
        assert store.export() == expected
        crashed = _ledger(db_url, session)
        assert [(e["tool"], e["status"]) for e in crashed] == [(action, "attempted")]
        assert _keys(store) - keys_before == {crashed[0]["key"]}  # the store recorded the write's key
        restarted = _report(_worker(db_url, store, session, plan["user_id"], "Anything else?"))
        assert restarted["notices"], restarted  # the user is told what reconciliation found
        assert all(n in restarted["reply"] for n in restarted["notices"]), restarted
        print(f"\n[kill9] restart notice: {restarted['notices'][0]!r}")
        entries = restarted["ledger"]
    else:
        report = _report(first)
        assert report["reply"].endswith("Done."), report
        entries = report["ledger"]

    assert [(e["tool"], e["status"]) for e in entries] == [(action, "succeeded")], entries
    assert entries[0]["result"]["order_id"] == arguments["order_id"]
    new_keys = _keys(store) - keys_before
    assert new_keys == {entries[0]["key"]}  # one idempotency record: the store acted once
    after = store.export()
    assert after["orders"][arguments["order_id"]] == expected["orders"][arguments["order_id"]]
    assert after == expected
    refunds = [p for p in after["orders"][arguments["order_id"]]["payment_history"]
               if p["transaction_type"] == "refund"]
    notices = restarted["notices"] if mode == "kill_9" else []
    print(f"\n[kill9] {action} {mode}: first rc={first.returncode}, ledger={entries[0]['status']}, "
          f"status={after['orders'][arguments['order_id']]['status']!r}, refunds={len(refunds)}, "
          f"store keys +{len(new_keys)}, notices={len(notices)}")
