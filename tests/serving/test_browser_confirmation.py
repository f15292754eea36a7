"""Confirmations in the chat page, in a real browser: asked only when the store would accept the write,
a Decline is respected, and a reload shows exactly the conversation the customer saw.

Headless Chromium (Debian's) drives /chat against a real server over the real retail store. The
model is a scripted double of the small model that looped: on every customer message it proposes
the same cancel again. The conversation area is captured before and after each reload (its text,
its DOM and a screenshot) and compared; the screenshots are kept under the temp folder.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from concierge.domains.retail.demo import order_status, walkthrough_store
from concierge.domains.retail.store.schema import orders, users
from concierge.security.auth import issue_jwt
from concierge.testing import FunctionModel
from concierge.testing.retail_site import RetailApp, looping_planner
from concierge.testing.serving import ServerThread

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(tempfile.gettempdir()) / "concierge-browser-confirmation"
WAIT_MS = 20_000
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
                 "--font-render-hinting=none", "--disable-partial-raster", "--disable-lcd-text",
                 "--force-color-profile=srgb"]
FINISHED = '[data-testid="turn"]:not(.live)'
DONE = "n => window.__events.filter((e) => e.type === 'turn_finished').length >= n"

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect


@dataclass
class Site:
    server: ServerThread
    engine: Engine
    token: str
    order_id: str
    email: str


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    if not CHROMIUM.exists():
        pytest.skip("chromium not installed: ./dev test installs it")
    folder = tmp_path_factory.mktemp("browser-confirmation")
    engine = walkthrough_store()
    query = (select(orders.c.order_id, users.c.email).join(users, users.c.user_id == orders.c.user_id)
             .where(orders.c.status == "pending").order_by(orders.c.order_id).limit(1))
    with engine.connect() as conn:
        order_id, email = conn.execute(query).one()
    model = FunctionModel(looping_planner, record=False, token_delay_s=0.005)  # the reply streams
    app = RetailApp(model, engine, folder, audit=False)
    with ServerThread(app.make_app) as server:
        tenants = app.service.tenants
        record = server.call(tenants.create_tenant("shop", rate=(100.0, 200), user_rate=(100.0, 200)))
        token = issue_jwt(record.jwt_config, subject="browser-shopper", role="customer")
        yield Site(server, engine, token, order_id, email)


@dataclass(frozen=True)
class Capture:
    text: str
    dom: str
    png: bytes

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.png).hexdigest()[:16]


def _capture(page: Any, name: str) -> Capture:
    """The conversation area as the customer sees it: text, DOM, and pixels (saved for a person)."""
    page.mouse.move(0, 0)  # no hover state on a bubble or a button
    messages = page.locator("#messages")
    SHOTS.mkdir(parents=True, exist_ok=True)
    png = messages.screenshot(path=str(SHOTS / name), animations="disabled", caret="hide")
    print(f"screenshot: {SHOTS / name}")
    return Capture(messages.inner_text(), messages.evaluate("node => node.outerHTML"), png)


def _reload_and_compare(page: Any, before: Capture, turns: int, name: str) -> Capture:
    page.reload()
    expect(page.locator(FINISHED)).to_have_count(turns, timeout=WAIT_MS)
    expect(page.get_by_test_id("message-input")).to_be_enabled(timeout=WAIT_MS)
    after = _capture(page, name)
    assert after.text == before.text
    assert after.dom == before.dom
    assert after.digest == before.digest, f"{name}: the reloaded conversation does not look the same"
    return after


def test_confirmations_are_asked_only_when_they_can_succeed_and_survive_a_reload(site: Site) -> None:
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"{site.server.url}/chat")
            page.get_by_test_id("login-token").fill(site.token)
            page.get_by_test_id("token-button").click()
            expect(page.get_by_test_id("session-id")).to_contain_text("web-", timeout=WAIT_MS)
            box = page.get_by_test_id("message-input")
            expect(box).to_be_enabled(timeout=WAIT_MS)
            cards = page.get_by_test_id("confirmation-card")
            finished = page.locator(FINISHED)

            def wait_for_turns(turns: int) -> None:
                """Until the page has received `turns` turn_finished events since it loaded."""
                page.wait_for_function(DONE, arg=turns, timeout=WAIT_MS)
                expect(box).to_be_enabled(timeout=WAIT_MS)

            def say(text: str, turns: int) -> None:
                box.fill(text)
                box.press("Enter")
                wait_for_turns(turns)

            # no customer identified yet: the cancel is refused with a reason, and no card is shown
            say(f"Please cancel order {site.order_id}, I ordered it by mistake.", 1)
            expect(cards).to_have_count(0)
            reply = page.get_by_test_id("assistant-message").last
            expect(reply).to_contain_text("Not done: cancel_pending_order")
            expect(reply).to_contain_text("Identify the customer first")
            refused = page.get_by_test_id("tool-chip").filter(has_text="cancel_pending_order").last
            expect(refused).to_have_attribute("data-status", "refused")
            expect(refused).to_contain_text("✗")

            # identified, the same cancel can succeed: now, and only now, the customer is asked
            say(f"My email is {site.email}.", 2)
            say("Please cancel it.", 3)
            expect(cards).to_have_count(1)
            expect(page.get_by_test_id("confirm-button")).to_be_visible()
            assert order_status(site.engine, site.order_id) == "pending"

            # Decline: nothing is done, and the model's immediate re-proposal brings no new card
            page.get_by_test_id("decline-button").click()
            wait_for_turns(4)
            expect(page.get_by_test_id("decision-marker").last).to_have_text("✗ You declined cancel_pending_order")
            expect(cards).to_have_count(1)
            expect(cards.locator(".outcome")).to_have_text("Declined: nothing was changed")
            expect(page.get_by_test_id("confirm-button")).to_be_hidden()
            say("Why is that?", 5)
            expect(cards).to_have_count(1)
            expect(page.get_by_test_id("assistant-message").last).to_contain_text("declined by the customer")
            assert order_status(site.engine, site.order_id) == "pending"
            assert "yes" not in page.get_by_test_id("user-message").all_inner_texts()

            # a reload draws the same conversation: text, DOM and pixels
            declined = _capture(page, "01-declined-live.png")
            _reload_and_compare(page, declined, 5, "02-declined-reloaded.png")
            expect(finished).to_have_count(5)

            # the customer asks again: one new card; Confirm runs the cancel (events count from the reload)
            say("Actually, please cancel it after all.", 1)
            expect(cards).to_have_count(2)
            page.get_by_test_id("confirm-button").last.click()
            wait_for_turns(2)
            expect(page.get_by_test_id("decision-marker").last).to_have_text("✓ You confirmed cancel_pending_order")
            expect(page.get_by_test_id("tool-chip").filter(has_text="cancel_pending_order").last) \
                .to_have_attribute("data-status", "succeeded")
            assert order_status(site.engine, site.order_id) == "cancelled"
            confirmed = _capture(page, "03-confirmed-live.png")
            _reload_and_compare(page, confirmed, 7, "04-confirmed-reloaded.png")

            # a phone: nothing wider than the screen, and a reload still draws the same thing
            page.set_viewport_size({"width": 390, "height": 844})
            page.evaluate("document.getElementById('messages').scrollTop = 1e9")
            widths = page.evaluate("""() => ({page: document.documentElement.scrollWidth,
                list: document.getElementById('messages').scrollWidth,
                listBox: document.getElementById('messages').clientWidth,
                widest: Math.max(...[...document.querySelectorAll('#messages .bubble, #messages .confirm-card')]
                                 .map((n) => n.getBoundingClientRect().right))})""")
            assert widths["page"] <= 390 and widths["list"] <= widths["listBox"] and widths["widest"] <= 390, widths
            expect(box).to_be_visible()
            phone = _capture(page, "05-phone-live.png")
            _reload_and_compare(page, phone, 7, "06-phone-reloaded.png")
            assert not errors, errors
        finally:
            browser.close()
