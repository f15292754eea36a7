"""The web pages in a real browser: a customer cancels an order in /chat, an operator audits it in /console.

Headless Chromium (Debian's, never a downloaded one) drives the pages against a real server on a
loopback port; the retail agent is the scripted walkthrough planner, so the run is deterministic.
Screenshots land in test-artifacts/screenshots/ for a human to look at.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from concierge.domains.retail.demo import (
    DemoCustomer,
    demo_customer,
    order_status,
    walkthrough_store,
)
from concierge.serving.app import ServeOptions
from concierge.testing.retail_site import RetailApp
from concierge.testing.serving import ServerThread

CHROMIUM = Path("/usr/bin/chromium")
CONSOLE_TOKEN = "browser-test-console-token-0123456789"  # what `concierge serve` prints in the console link
SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
WAIT_MS = 20_000
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]

# Records each length the newest assistant bubble's text takes, to prove the reply grew in steps.
GROWTH_PROBE = """() => {
  window.__lengths = [];
  new MutationObserver(() => {
    const bubbles = document.querySelectorAll('[data-testid="assistant-message"]');
    const last = bubbles[bubbles.length - 1];
    if (last && last.textContent.length !== window.__lengths[window.__lengths.length - 1]) {
      window.__lengths.push(last.textContent.length);
    }
  }).observe(document.getElementById("messages"), {childList: true, subtree: true, characterData: true});
}"""

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect


@dataclass
class Site:
    server: ServerThread
    engine: object
    customer: DemoCustomer


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    if not CHROMIUM.exists():
        print("\nchromium not installed: ./dev test installs it")
        pytest.skip("chromium not installed: ./dev test installs it")
    folder = tmp_path_factory.mktemp("browser")
    engine = walkthrough_store()
    customer = demo_customer(engine)
    model = customer.walkthrough_model()
    model.token_delay_s = 0.02  # the reply visibly streams, word by word
    app = RetailApp(model, engine, folder, ServeOptions(demo_tenant="demo", console_token=CONSOLE_TOKEN))
    with ServerThread(app.make_app) as server:
        tenants = app.service.tenants
        server.call(tenants.create_tenant("demo", rate=(100.0, 200), user_rate=(100.0, 200)))
        yield Site(server, engine, customer)


def _shot(page: object, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / name
    page.screenshot(path=str(path), full_page=False)  # type: ignore[attr-defined]
    print(f"screenshot: {path}")
    return path


def test_customer_cancels_an_order_and_the_operator_sees_the_ledger(site: Site) -> None:
    customer = site.customer
    first, second, _ = customer.conversation()
    if SHOTS.exists():
        shutil.rmtree(SHOTS)
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 820})
            page = context.new_page()
            page_errors: list[str] = []
            page.on("pageerror", lambda exc: page_errors.append(str(exc)))

            # sign in as a new demo customer (the store's account is found by email in the chat);
            # the page opens a session and its WebSocket
            page.goto(f"{site.server.url}/chat")
            page.get_by_test_id("login-button").click()
            expect(page.get_by_test_id("session-id")).to_contain_text("web-", timeout=WAIT_MS)
            session_id = page.get_by_test_id("session-id").inner_text().strip()
            message_input = page.get_by_test_id("message-input")
            expect(message_input).to_be_enabled(timeout=WAIT_MS)

            # message 1: the reply streams token by token into the assistant's bubble; an observer
            # records every length the bubble's text goes through
            page.evaluate(GROWTH_PROBE)
            message_input.fill(first)
            message_input.press("Enter")
            expect(page.get_by_test_id("send-button")).to_be_disabled(timeout=WAIT_MS)
            bubble = page.get_by_test_id("assistant-message").last
            expect(bubble).to_contain_text("Which order would you like to cancel?", timeout=WAIT_MS)
            lengths = page.evaluate("window.__lengths")
            assert len(set(lengths)) >= 5 and lengths == sorted(lengths), f"not streamed: {lengths}"
            expect(message_input).to_be_enabled(timeout=WAIT_MS)
            events = page.evaluate("window.__events")
            tokens = [e for e in events if e["type"] == "token"]
            assert len(tokens) >= 5, events
            assert "".join(e["text"] for e in tokens).strip().endswith("Which order would you like to cancel?")
            assert events[-1]["type"] == "turn_finished"
            expect(page.get_by_test_id("tool-chip").first).to_contain_text("find_user_id_by_email")
            _shot(page, "01-chat-streamed-reply.png")

            # message 2: the agent looks the order up, then asks to confirm the cancellation
            message_input.fill(second)
            page.get_by_test_id("send-button").click()
            confirm = page.get_by_test_id("confirm-button")
            expect(confirm).to_be_visible(timeout=WAIT_MS)
            expect(page.get_by_test_id("confirmation-card")).to_contain_text(customer.order_id)
            expect(page.get_by_test_id("tool-chip").filter(has_text="get_order_details")).to_contain_text("✓")
            expect(page.get_by_test_id("decline-button")).to_be_visible()
            expect(message_input).to_be_enabled(timeout=WAIT_MS)
            assert order_status(site.engine, customer.order_id) == "pending"  # nothing done before the OK
            _shot(page, "02-chat-confirmation.png")

            # the customer confirms with the button: the cancel runs, the agent says so
            confirm.click()
            final = page.get_by_test_id("assistant-message").last
            expect(final).to_contain_text("cancelled", timeout=WAIT_MS)
            expect(final).to_contain_text(customer.order_id)
            expect(page.get_by_test_id("tool-chip").filter(has_text="cancel_pending_order").last) \
                .to_contain_text("✓", timeout=WAIT_MS)
            expect(message_input).to_be_enabled(timeout=WAIT_MS)
            _shot(page, "03-chat-cancelled.png")
            assert order_status(site.engine, customer.order_id) == "cancelled"

            # a reload continues the same session (?session=ID) from the server's history
            page.reload()
            expect(page.get_by_test_id("session-id")).to_have_text(session_id, timeout=WAIT_MS)
            expect(page.get_by_test_id("assistant-message").last).to_contain_text("cancelled", timeout=WAIT_MS)
            expect(page.get_by_test_id("user-message").first).to_contain_text(customer.email)
            expect(page.get_by_test_id("confirm-button")).to_have_count(0)
            expect(message_input).to_be_enabled(timeout=WAIT_MS)

            # the operator console, in a second page: the session, its waterfall and its ledger
            console = context.new_page()
            console.on("pageerror", lambda exc: page_errors.append(str(exc)))
            # the one-time link `concierge serve` printed signs the operator in, and leaves the address bar
            console.goto(f"{site.server.url}/console?token={CONSOLE_TOKEN}")
            row = console.get_by_test_id("session-row").filter(has_text=session_id)
            expect(row).to_be_visible(timeout=WAIT_MS)
            assert "token=" not in console.url, console.url
            expect(console.locator("#whoami")).to_contain_text("operator")
            # the same link a second time (another tab): refused, the page offers to sign in otherwise
            again = context.new_page()
            again.goto(f"{site.server.url}/console?token={CONSOLE_TOKEN}")
            expect(again.locator("#signin-notice")).to_contain_text("already used", timeout=WAIT_MS)
            expect(again.get_by_test_id("session-row")).to_have_count(0)
            again.close()
            expect(row).to_contain_text("answered")
            row.click()
            ledger_row = console.get_by_test_id("ledger-row").filter(has_text="cancel_pending_order")
            expect(ledger_row).to_have_count(1, timeout=WAIT_MS)
            expect(ledger_row).to_contain_text("succeeded")
            expect(console.get_by_test_id("waterfall")).to_have_count(3, timeout=WAIT_MS)
            bars = console.get_by_test_id("waterfall-bar")
            assert bars.count() >= 6, bars.count()
            widths = [b.bounding_box()["width"] for b in bars.all()]  # type: ignore[index]
            assert all(w >= 2 for w in widths) and max(widths) > 50, widths
            expect(console.get_by_test_id("waterfall").last).to_contain_text("cancel_pending_order")
            # each turn's reasoning steps are listed beside its waterfall
            reasoning = console.get_by_test_id("reasoning").first
            reasoning.locator("summary").click()
            expect(reasoning.get_by_test_id("reasoning-step").first).to_contain_text("react · ")
            _shot(console, "04-console.png")
            # the audit trail: every turn's decisions, the confirmed cancel with the ledger's word on it
            audit = console.get_by_test_id("audit")
            audit.locator("summary").click()
            expect(audit.get_by_test_id("audit-turn")).to_have_count(3, timeout=WAIT_MS)
            expect(audit).to_contain_text("cancel_pending_order → succeeded (ledger: succeeded)")
            audit.scroll_into_view_if_needed()
            _shot(console, "04b-console-audit.png")
            ledger_row.scroll_into_view_if_needed()
            _shot(console, "05-console-ledger.png")

            # and narrow screens still work
            console.set_viewport_size({"width": 800, "height": 900})
            expect(ledger_row).to_be_visible()
            _shot(console, "06-console-narrow.png")
            page.set_viewport_size({"width": 800, "height": 900})
            _shot(page, "07-chat-narrow.png")
            assert not page_errors, page_errors
        finally:
            browser.close()
