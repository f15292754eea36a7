"""Row 7: a malformed `Concierge-Signature` header could make the webhook route answer 500.

Observed on the landed server: `Concierge-Signature: t=<400 nines>,v1=00` for any existing
tenant gave a 500 (`OverflowError` comparing the huge timestamp with the clock). Any header,
of any size or byte content, must be a 401 with the JSON error body; a bad `Concierge-Delivery`
id a 4xx; never a 5xx.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from concierge import Agent, Runtime
from concierge.runtime.sessions.sql import SqlSessionStore
from concierge.security.tenants import TenantDirectory
from concierge.serving.app import create_app
from concierge.serving.ratelimit import InProcessRateLimiter
from concierge.serving.records import SessionDirectory
from concierge.serving.service import TurnService
from concierge.serving.webhooks import DeliveryLog
from concierge.testing import EchoModel
from concierge.testing.serving import ServerThread

BODY = json.dumps({"session_id": "wh-malformed", "user_id": "frank", "text": "hi"}).encode()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('webhook-malformed')}/serve.db"
    holder: dict[str, TurnService] = {}

    def make_app():
        runtime = Runtime(Agent(instructions="You help.", model=EchoModel()), store=SqlSessionStore(url))
        holder["service"] = TurnService(runtime, TenantDirectory(url), SessionDirectory(url), DeliveryLog(url),
                                        InProcessRateLimiter())
        return create_app(holder["service"])

    with ServerThread(make_app) as thread:
        thread.call(holder["service"].tenants.create_tenant("acme"))  # a tenant name is all it takes
        yield thread


@pytest.fixture(scope="module")
def client(server: ServerThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        yield http


def _post(client: httpx.Client, signature: bytes | str, delivery: bytes | str = "m-1") -> httpx.Response:
    headers = {"Concierge-Signature": signature, "Concierge-Delivery": delivery, "Content-Type": "application/json"}
    return client.post("/v1/webhooks/acme", content=BODY, headers=headers)


def _refused(response: httpx.Response, status: int = 401, code: str = "bad_signature") -> None:
    assert response.status_code == status, (response.status_code, response.text[:300])
    error = response.json()["error"]
    assert error["code"] == code and error["message"]


def test_a_timestamp_of_400_nines_is_401(client: httpx.Client) -> None:
    for scheme in ("v1", "v2"):
        _refused(_post(client, f"t={'9' * 400},{scheme}=00"))
        _refused(_post(client, f"t={'9' * 4000},{scheme}=00"))  # near the header bound, over int's str limit
    _refused(_post(client, f"t=1{'0' * 20},v2=00"))  # far future, still fits a 64-bit int comparison


# Pieces of a header: right and wrong keys, values and separators, so the examples land near the grammar.
_KEYS = st.sampled_from(["t", "v1", "v2", "v0", "", "T", " t", "t ", "==", "v2 ", "\u00e9"])
_VALUES = st.one_of(
    st.text(alphabet="0123456789", max_size=60),
    st.builds(lambda n: "9" * n, st.integers(13, 4096)),
    st.builds(str, st.integers(-(10**30), 10**30)),
    st.text(alphabet="0123456789abcdef", max_size=80),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters=","), max_size=20),
    st.sampled_from(["", "=", "1e309", "inf", "nan", "-0", "\u0661\u0662", "0x10", " 1 "]),
)
_PART = st.one_of(st.builds(lambda k, v: f"{k}={v}", _KEYS, _VALUES), st.sampled_from(["", " ", "=", "t"]))
_STRUCTURED = st.lists(_PART, max_size=24).map(",".join)
# Anything an HTTP header value can carry: visible ASCII, spaces, tabs, and Latin-1 bytes.
_HEADER_BYTE = st.sampled_from([9, *range(0x20, 0x7F), *range(0x80, 0x100)])
_RAW = st.lists(_HEADER_BYTE, max_size=300).map(bytes)
# Well-formed but for the timestamp: any number of digits, with either scheme.
_NEAR_VALID = st.builds(lambda digits, scheme, mac: f"t={digits},{scheme}={mac}",
                        st.one_of(st.integers(1, 4000).map(lambda n: "9" * n),
                                  st.text(alphabet="0123456789", min_size=1, max_size=4000)),
                        st.sampled_from(["v1", "v2"]), st.text(alphabet="0123456789abcdef", max_size=64))
_HUGE = st.builds(lambda chunk, n: (chunk * n)[:60_000], st.sampled_from(["9", ",", "t=1,", "v2=00,", "=", "\u00ff"]),
                  st.integers(1_000, 60_000))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(header=st.one_of(_NEAR_VALID, _STRUCTURED, _RAW, _HUGE))
@example(header="t=" + "9" * 400 + ",v1=00")
def test_any_malformed_header_is_401_with_the_json_body(client: httpx.Client, header: str | bytes) -> None:
    value = header.encode() if isinstance(header, str) else header  # non-ASCII text goes as UTF-8 bytes
    value = value.strip(b" \t")  # HTTP drops surrounding whitespace; an empty value is a missing header
    _refused(_post(client, value))


def test_a_megabyte_header_is_never_a_5xx(server: ServerThread) -> None:
    """Headers the HTTP layer takes (up to ~64 KB here) reach our check, a 401; bigger ones it refuses
    itself, with a 400 or by closing the connection while the client is still sending."""
    for header in ("t=" + "9" * 60_000 + ",v1=00", "t=" + "9" * 1_000_000 + ",v1=00", "t=1," + "v2=00," * 170_000):
        with httpx.Client(base_url=server.url, timeout=30) as client:  # a fresh connection each time
            try:
                response = _post(client, header)
            except httpx.TransportError:  # reset by the HTTP layer: no answer, and certainly no 5xx
                continue
        if response.status_code == 401:
            _refused(response)
        else:
            assert 400 <= response.status_code < 500, response.status_code
    assert httpx.get(f"{server.url}/healthz", timeout=10).status_code == 200


def test_control_bytes_in_the_header_are_never_a_5xx(server: ServerThread) -> None:
    """Bytes no HTTP client sends (NUL, controls) over a raw socket: the HTTP layer or our check refuses them."""
    for value in (b"t=\x00\x01,v1=00", b"t=1\x7f,v2=00", b"\x1b[31m", b"t=" + b"\xff" * 500 + b",v2=00"):
        request = (b"POST /v1/webhooks/acme HTTP/1.1\r\nHost: test\r\nConcierge-Signature: " + value
                   + b"\r\nConcierge-Delivery: m-1\r\nContent-Type: application/json\r\nContent-Length: "
                   + str(len(BODY)).encode() + b"\r\nConnection: close\r\n\r\n" + BODY)
        with socket.create_connection((server.host, server.port), timeout=10) as sock:
            sock.sendall(request)
            status_line = sock.makefile("rb").readline()
        status = int(status_line.split()[1])
        assert 400 <= status < 500, (value, status_line)


@pytest.mark.parametrize(("delivery", "reason"), [
    ("x" * 201, "too long"), ("caf\u00e9".encode("latin-1"), "not ASCII"), ("a b", "a space"),
    ("a\tb", "a tab"), ("\u00ff" * 5000, "huge, not ASCII"),
])
def test_a_bad_delivery_id_is_4xx(client: httpx.Client, delivery: str | bytes, reason: str) -> None:
    value = delivery.encode("latin-1") if isinstance(delivery, str) else delivery
    signature = f"t={int(time.time())},v2=" + "0" * 64
    _refused(_post(client, signature, value), 422, "invalid_request")


def test_a_missing_delivery_id_is_4xx(client: httpx.Client) -> None:
    response = client.post("/v1/webhooks/acme", content=BODY, headers={"Concierge-Signature": "t=1,v2=00"})
    _refused(response, 422, "invalid_request")
