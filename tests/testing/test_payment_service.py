"""The test payment service, over real HTTP against its own process: keys, rules and faults."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from concierge.testing import PaymentService, ServiceProcess


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PaymentService]:
    with PaymentService(tmp_path_factory.mktemp("payment-service") / "payments.db") as svc:
        yield svc


@pytest.fixture(autouse=True)
def _clean(service: PaymentService) -> None:
    service.wait_idle()
    service.reset()


@pytest.fixture
def client(service: PaymentService) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=service.url, timeout=5.0) as http:
        yield http


def charge(client: httpx.Client, key: str | None = None, *, path: str = "/charges", account: str = "acct-1",
           amount_cents: int = 500, reference: str | None = "ref-1", timeout: float | None = None) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key else {}
    body = {"account": account, "amount_cents": amount_cents, "reference": reference}
    extra: dict[str, Any] = {"timeout": timeout} if timeout is not None else {}
    return client.post(path, json=body, headers=headers, **extra)


def test_keyed_charge_applies_once_and_replays(service: PaymentService, client: httpx.Client) -> None:
    responses = [charge(client, "key-1") for _ in range(3)]
    assert [r.status_code for r in responses] == [201, 201, 201]
    assert responses[0].json() == responses[1].json() == responses[2].json()
    assert responses[0].json()["id"].startswith("ch_") and responses[0].json()["status"] == "succeeded"
    assert "idempotent-replayed" not in responses[0].headers
    assert [r.headers.get("Idempotent-Replayed") for r in responses[1:]] == ["true", "true"]
    assert len(service.effects()) == 1

    reused = charge(client, "key-1", amount_cents=501)
    assert reused.status_code == 422 and reused.json() == {"error": "idempotency_key_reused"}
    assert len(service.effects()) == 1


def test_legacy_endpoint_ignores_keys(service: PaymentService, client: httpx.Client) -> None:
    first, second = charge(client, "key-2", path="/legacy/charges"), charge(client, "key-2", path="/legacy/charges")
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] != second.json()["id"]
    assert "idempotent-replayed" not in second.headers
    assert len(service.effects()) == 2


def test_bad_input_is_rejected(client: httpx.Client) -> None:
    assert charge(client, amount_cents=0).status_code == 422
    assert client.post("/charges", json={"account": "a", "amount_cents": "5"}).status_code == 422
    assert client.post("/_admin/faults", json={"faults": [{"kind": "meltdown"}]}).status_code == 422


def test_refund_rules(service: PaymentService, client: httpx.Client) -> None:
    charge_id = charge(client, amount_cents=500).json()["id"]
    too_much = client.post("/refunds", json={"charge_id": charge_id, "amount_cents": 501})
    assert too_much.status_code == 400 and too_much.json() == {"error": "refund_exceeds_charge"}
    unknown = client.post("/refunds", json={"charge_id": "ch_missing", "amount_cents": 1})
    assert unknown.status_code == 404 and unknown.json() == {"error": "no_such_charge"}
    assert [e["kind"] for e in service.effects()] == ["charge"]

    refund = client.post("/refunds", json={"charge_id": charge_id, "amount_cents": 200},
                         headers={"Idempotency-Key": "refund-1"})
    assert refund.status_code == 201 and refund.json()["id"].startswith("re_")
    replay = client.post("/refunds", json={"charge_id": charge_id, "amount_cents": 200},
                         headers={"Idempotency-Key": "refund-1"})
    assert replay.json() == refund.json() and replay.headers["Idempotent-Replayed"] == "true"
    assert client.post("/refunds", json={"charge_id": charge_id, "amount_cents": 301}).status_code == 400
    assert client.get("/refunds", params={"charge_id": charge_id}).json()["data"] == [refund.json()]
    assert client.get("/accounts/acct-1/balance").json() == {"account": "acct-1", "balance_cents": 300}


def test_lookup_by_reference(client: httpx.Client) -> None:
    made = charge(client, path="/legacy/charges", reference="r1").json()
    charge(client, path="/legacy/charges", reference="r2")
    assert client.get("/charges", params={"reference": "r1"}).json() == {"data": [made]}
    assert client.get("/charges", params={"reference": "nope"}).json() == {"data": []}
    assert client.get(f"/charges/{made['id']}").json() == made
    assert client.get("/charges/ch_missing").status_code == 404


def test_timeout_before_applies_nothing_and_frees_the_key(service: PaymentService, client: httpx.Client) -> None:
    service.inject({"kind": "timeout_before", "path": "/charges", "delay_s": 0.5})
    with pytest.raises(httpx.ReadTimeout):
        charge(client, "key-tb", timeout=0.2)
    in_progress = charge(client, "key-tb")
    assert in_progress.status_code == 409 and in_progress.json() == {"error": "request_in_progress"}
    service.wait_idle()
    assert service.effects() == []
    retry = charge(client, "key-tb")
    assert retry.status_code == 201 and "idempotent-replayed" not in retry.headers
    assert len(service.effects()) == 1


def test_timeout_after_applies_once(service: PaymentService, client: httpx.Client) -> None:
    service.inject({"kind": "timeout_after", "path": "/charges", "delay_s": 0.5})
    with pytest.raises(httpx.ReadTimeout):
        charge(client, "key-ta", timeout=0.2)
    assert len(service.effects()) == 1
    retry = charge(client, "key-ta")
    assert retry.status_code == 201 and retry.headers["Idempotent-Replayed"] == "true"
    assert len(service.effects()) == 1


def test_reset_after_breaks_the_connection_after_the_effect(service: PaymentService,
                                                            client: httpx.Client) -> None:
    service.inject({"kind": "reset_after", "path": "/legacy/charges"})
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        charge(client, path="/legacy/charges")
    assert len(service.effects()) == 1
    assert charge(client, path="/legacy/charges").status_code == 201  # the fault was used up


def test_error_500_before_applies_nothing(service: PaymentService, client: httpx.Client) -> None:
    service.inject({"kind": "error_500_before"})
    failed = charge(client, "key-5b")
    assert failed.status_code == 500 and failed.json() == {"error": "internal"}
    assert service.effects() == []
    assert charge(client, "key-5b").status_code == 201
    assert len(service.effects()) == 1


def test_error_500_after_stores_the_real_answer(service: PaymentService, client: httpx.Client) -> None:
    service.inject({"kind": "error_500_after", "path": "/charges"})
    failed = charge(client, "key-5a")
    assert failed.status_code == 500 and failed.json() == {"error": "internal"}
    assert len(service.effects()) == 1
    retry = charge(client, "key-5a")
    assert retry.status_code == 201 and retry.headers["Idempotent-Replayed"] == "true"
    assert retry.json()["id"] == service.effects()[0]["id"]
    assert len(service.effects()) == 1


def test_faults_match_their_path_in_order(service: PaymentService, client: httpx.Client) -> None:
    service.inject({"kind": "error_500_before", "path": "/legacy/charges"},
                   {"kind": "error_500_before", "path": "/accounts/acct-1/balance"})
    assert charge(client, "key-path").status_code == 201  # /charges matches neither fault
    assert client.get("/accounts/acct-1/balance").status_code == 500
    assert charge(client, path="/legacy/charges").status_code == 500
    assert charge(client, path="/legacy/charges").status_code == 201


def test_inflight_shows_a_request_held_after_its_effect(service: PaymentService) -> None:
    service.inject({"kind": "timeout_after", "path": "/charges", "delay_s": 1.0})
    result: dict[str, httpx.Response] = {}

    def send() -> None:
        with httpx.Client(base_url=service.url, timeout=5.0) as http:
            result["response"] = charge(http, "key-inflight")

    sender = threading.Thread(target=send)
    sender.start()
    entry = service.wait_inflight("after_effect")
    assert entry == {"path": "/charges", "kind": "timeout_after", "stage": "after_effect"}
    assert len(service.effects()) == 1 and "response" not in result
    sender.join(timeout=5)
    assert result["response"].status_code == 201
    assert service.inflight() == []


def test_wait_inflight_times_out(service: PaymentService) -> None:
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        service.wait_inflight("before_effect", timeout_s=0.1)
    assert time.monotonic() - started < 2


def test_service_that_dies_reports_its_output(tmp_path: Any) -> None:
    broken = ServiceProcess("concierge.testing.payment_service", ["--db", str(tmp_path / "x.db"), "--bogus"],
                            startup_timeout_s=10)
    with pytest.raises(RuntimeError, match="unrecognized arguments"):
        broken.start()
    broken.stop()  # idempotent after a failed start


def test_concurrent_requests_with_one_key_apply_once(service: PaymentService) -> None:
    statuses: list[int] = []

    def send() -> None:
        with httpx.Client(base_url=service.url, timeout=5.0) as http:
            statuses.append(charge(http, "key-race").status_code)

    senders = [threading.Thread(target=send) for _ in range(8)]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join(timeout=5)
    assert len(statuses) == 8 and set(statuses) <= {201, 409} and 201 in statuses
    assert len(service.effects()) == 1


def test_concurrent_refunds_never_exceed_the_charge(service: PaymentService, client: httpx.Client) -> None:
    charge_id = charge(client, amount_cents=500).json()["id"]
    statuses: list[int] = []

    def refund() -> None:
        with httpx.Client(base_url=service.url, timeout=5.0) as http:
            statuses.append(http.post("/refunds", json={"charge_id": charge_id, "amount_cents": 100}).status_code)

    senders = [threading.Thread(target=refund) for _ in range(8)]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join(timeout=5)
    assert sorted(statuses) == [201] * 5 + [400] * 3
    assert client.get("/accounts/acct-1/balance").json()["balance_cents"] == 0
