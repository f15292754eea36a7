"""The fault matrix: every fault × every tool shape × {no crash, kill -9 and restart}.

Each cell runs a real turn against the payment service (a separate process with its own
SQLite file), injects one fault, and — in the crash column — kills the runtime process with
SIGKILL while the call is in flight, then starts a new one on the same database. Afterwards
the service's own database is compared with the ledger: exactly one effect for every action
the ledger calls succeeded, none for failed ones, and every unknown outcome told to the user.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from concierge.testing import PaymentService, call
from concierge.testing.fault_worker import PRINCIPAL, build_runtime
from concierge.testing.faults import CrashingLedger, Fault, SimulatedCrash
from concierge.testing.payment_tools import KINDS, TOOL_FOR_KIND
from concierge.tools import SqlLedger

FAULTS = [Fault.TIMEOUT_BEFORE, Fault.TIMEOUT_AFTER, Fault.RESET, Fault.HTTP_5XX, Fault.DUPLICATE, Fault.KILL]
MODES = ["no_crash", "kill_9"]
HOLD_S = 2.5  # how long the service holds a faulted request open in the crash column
UNKNOWN_TOLD = ("could not confirm", "could not be confirmed")

# The service-side fault for each kind; (kind, delay in the no-crash column).
SERVER_FAULT = {
    Fault.TIMEOUT_BEFORE: ("timeout_before", 1.0),
    Fault.TIMEOUT_AFTER: ("timeout_after", 1.0),
    Fault.RESET: ("reset_after", 0.0),
    Fault.HTTP_5XX: ("error_500_before", 0.0),
    Fault.DUPLICATE: ("timeout_after", 1.0),
    Fault.KILL: None,  # no service fault: the runtime dies between the effect and the ledger write
}
# Where the request is when the crash column kills the runtime.
KILL_STAGE = {Fault.TIMEOUT_BEFORE: "before_effect", Fault.HTTP_5XX: "before_effect"}


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    with PaymentService(tmp_path_factory.mktemp("payments") / "payments.db") as svc:
        yield svc


def path_for(kind: str, account: str) -> str:
    return {"read": f"/accounts/{account}/balance", "idempotent": "/charges"}.get(kind, "/legacy/charges")


def _script(tool: str, account: str, repeat: int = 1) -> list:
    steps: list = []
    for _ in range(repeat):
        steps += [call(tool, account=account, amount_cents=1234), "Done."]
    return steps


async def _no_crash_cell(service, fault: Fault, kind: str, db_url: str, session: str, account: str) -> list[str]:
    tool = TOOL_FOR_KIND[kind]
    message = f"please pay 12.34 from {account}"
    server = SERVER_FAULT[fault]
    if server is not None:
        service.inject({"kind": server[0], "path": path_for(kind, account), "delay_s": server[1]})
    replies: list[str] = []
    if fault is Fault.KILL:
        crashing = CrashingLedger(SqlLedger(db_url))
        crashing.arm()
        runtime = build_runtime(db_url, service.url, _script(tool, account), ledger=crashing)
        try:
            replies.append((await runtime.turn(session, message, principal=PRINCIPAL)).reply)
            assert kind == "read", "a write must reach the ledger write the crash was armed for"
        except SimulatedCrash:
            assert kind != "read"
        restarted = build_runtime(db_url, service.url, ["Anything else?"])
        replies.append((await restarted.turn(session, "hello?", principal=PRINCIPAL)).reply)
        return replies
    runtime = build_runtime(db_url, service.url, _script(tool, account, 2 if fault is Fault.DUPLICATE else 1))
    replies.append((await runtime.turn(session, message, principal=PRINCIPAL)).reply)
    if fault is Fault.DUPLICATE:
        replies.append((await runtime.turn(session, message, principal=PRINCIPAL)).reply)
    service.wait_idle(timeout_s=15)
    return replies


def _worker(db_url: str, service, session: str, message: str, call_spec: str | None) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "concierge.testing.fault_worker", "--db", db_url, "--service", service.url,
           "--session", session, "--message", message]
    if call_spec:
        cmd += ["--call", call_spec]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _kill_cell(service, fault: Fault, kind: str, db_url: str, session: str, account: str) -> list[str]:
    tool = TOOL_FOR_KIND[kind]
    message = f"please pay 12.34 from {account}"
    server_kind = SERVER_FAULT[fault][0] if SERVER_FAULT[fault] else "timeout_after"
    service.inject({"kind": server_kind, "path": path_for(kind, account), "delay_s": HOLD_S})
    worker = _worker(db_url, service, session, message, f"{tool}:{account}:1234")
    try:
        service.wait_inflight(KILL_STAGE.get(fault, "after_effect"), timeout_s=30)
    except TimeoutError:
        out, err = worker.communicate(timeout=30)
        raise AssertionError(f"the faulted request never arrived; worker said: {out} {err[-2000:]}") from None
    os.kill(worker.pid, signal.SIGKILL)  # mid-call: the effect may be applied, the ledger not yet told
    worker.wait(timeout=10)
    assert worker.returncode == -signal.SIGKILL
    service.wait_idle(timeout_s=15)
    # The restarted runtime gets the user's next message (for a duplicate delivery: the same one again).
    again = _worker(db_url, service, session, message if fault is Fault.DUPLICATE else "hello?",
                    f"{tool}:{account}:1234" if fault is Fault.DUPLICATE else None)
    out, err = again.communicate(timeout=60)
    assert again.returncode == 0, err[-3000:]
    return [json.loads(out.strip().splitlines()[-1])["reply"]]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("fault", FAULTS, ids=[f.value for f in FAULTS])
async def test_fault_matrix_cell(service, tally, tmp_path, fault, kind, mode):
    session, account = f"s-{fault.value}-{kind}-{mode}", f"acct-{fault.value}-{kind}-{mode}"
    db_url = f"sqlite:///{tmp_path / 'runtime.db'}"
    if mode == "no_crash":
        replies = await _no_crash_cell(service, fault, kind, db_url, session, account)
    else:
        replies = _kill_cell(service, fault, kind, db_url, session, account)
    told = " ".join(replies).lower()

    ledger = SqlLedger(db_url)
    entries = await ledger.entries(session)
    await ledger.close()
    effects = [e for e in service.effects() if e["account"] == account]
    tally.cells += 1
    tally.shape = f"{len(FAULTS)} faults x {len(KINDS)} tool kinds x {len(MODES)} modes"
    if kind == "read":
        assert entries == [] and effects == []
        return
    assert entries, "a write must leave a ledger entry"
    assert all(e.status != "attempted" for e in entries), "recovery must settle every attempted entry"
    keys = {e.key for e in entries}
    for entry in entries:
        count = sum(1 for e in effects if e["reference"] == entry.key)
        tally.actions += 1
        tally.statuses[entry.status] += 1
        tally.double_effects += count > 1
        assert count <= 1, f"double effect for {entry.key}"
        if entry.status == "succeeded":
            assert count == 1
        elif entry.status in ("failed", "not_applied"):
            tally.lost_effects += count
            assert count == 0, f"the ledger says {entry.status} but the service applied it"
        else:
            assert entry.status == "unknown"
            surfaced = any(text in told for text in UNKNOWN_TOLD)
            tally.unknown_surfaced += surfaced
            tally.unknown_silent += not surfaced
            assert surfaced, f"unknown outcome not told to the user: {replies}"
    stray = [e for e in effects if e["reference"] not in keys]
    tally.lost_effects += len(stray)
    assert stray == [], "an effect the ledger knows nothing about"
    # Tools that can find out never leave the user with an unknown.
    if kind in ("idempotent", "lookup"):
        assert [e.status for e in entries] in (["succeeded"], ["not_applied"]), [e.status for e in entries]
