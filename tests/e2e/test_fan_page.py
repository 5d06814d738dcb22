"""The fan's page in a real browser (Debian's Chromium, headless, driven by Playwright) against
`make run`'s stack: sign in, wait in line, get admitted, pick a seat, pay, see the ticket; lose
a seat to another fan; let a hold run out. Each step's screenshot goes to docs/screenshots/."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from infra.stack import ROOT
from tests.e2e.test_make_run import (
    IDENTITY_SECRET,
    START_TIMEOUT_S,
    login,
    run_env,
    start_run,
    stop_run,
    wait_for_line,
)
from tests.e2e.test_make_run import call as api

SHOTS = ROOT / "docs" / "screenshots"
HOLD_S = 6
AHEAD = 18  # fans already in line, admitted at ADMIT_PER_S: the page's fan waits a few seconds
ADMIT_PER_S = 3


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    env = run_env(
        tmp_path_factory.mktemp("fan-page"),
        IDENTITY_JWT_SECRET=IDENTITY_SECRET,
        SEAT_HOLD_S=str(HOLD_S),
        QUEUE_ADMIT_CONTROL="fixed",
        QUEUE_ADMIT_PER_S=str(ADMIT_PER_S),
        RUN_DEMO_SEATS="12",
    )
    proc = start_run(env)
    try:
        output = "".join(wait_for_line(proc, "ready - Ctrl-C", START_TIMEOUT_S))
        (page,) = re.findall(r"^page\s+(\S+)", output, re.MULTILINE)
        yield {"page": page, "queue": f"http://127.0.0.1:{env['QUEUE_PORT']}"}
    finally:
        stop_run(proc)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is needed (make deps installs it)"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield b
        b.close()


def fan(browser: Browser, locale: str = "en-US") -> Page:
    context = browser.new_context(
        locale=locale, timezone_id="Asia/Seoul", viewport={"width": 420, "height": 860}
    )
    return context.new_page()


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def sign_in(page: Page, url: str, user: str) -> None:
    page.goto(url)
    page.get_by_label(re.compile("user name|사용자 이름")).fill(user)
    page.get_by_role("button", name=re.compile("^(Sign in|로그인)$")).click()


def seat(page: Page, seat_id: str):  # type: ignore[no-untyped-def]
    return page.locator(f'#seat-grid button[data-seat="{seat_id}"]')


class TestAFanInTheBrowser:
    def test_signs_in_waits_in_line_is_admitted_picks_a_seat_pays_and_sees_the_ticket(
        self, stack: dict[str, str], browser: Browser
    ) -> None:
        for i in range(AHEAD):  # a line in front of our fan
            api(f"{stack['queue']}/v1/queue/tokens", {"concert_id": "demo"}, login(f"ahead-{i}"))
        page = fan(browser)
        sign_in(page, stack["page"], "fan-a")
        expect(page.locator("#position")).to_contain_text("Your place:")
        expect(page.locator("#progress")).to_have_attribute("aria-valuenow", re.compile(r"\d+"))
        shot(page, "1-waiting")
        token_of = "() => localStorage.getItem('fan.queue.demo.fan-a')"
        token = page.evaluate(token_of)
        page.reload()  # a reload keeps the place: the same token, no second entry
        expect(page.locator("#position")).to_contain_text("Your place:")
        second_tab = page.context.new_page()
        second_tab.goto(stack["page"])  # nor does a second tab take a second place
        expect(second_tab.locator("#position")).to_contain_text("Your place:")
        assert page.evaluate(token_of) == second_tab.evaluate(token_of) == token
        second_tab.close()

        expect(page.locator("#seats")).to_be_visible(timeout=30_000)
        expect(page.locator("#turn")).to_contain_text("It is your turn")
        expect(seat(page, "7")).to_have_class("available")
        shot(page, "2-seat-map")
        seat(page, "7").click()

        expect(page.get_by_role("button", name="Pay now")).to_be_visible(timeout=15_000)
        expect(page.locator("#hold-status")).to_contain_text("Seat 7 is yours until")
        shot(page, "3-held")
        page.get_by_role("button", name="Pay now").click()

        expect(page.locator("#result-title")).to_have_text("You have a ticket", timeout=15_000)
        expect(page.locator(".ticket-seat")).to_have_text("Seat 7")
        shot(page, "4-ticket")

        other = fan(browser)  # another fan now sees seat 7 sold, live on the map
        sign_in(other, stack["page"], "fan-watcher")
        expect(other.locator("#seats")).to_be_visible(timeout=30_000)
        expect(seat(other, "7")).to_have_class("sold")
        expect(seat(other, "7")).to_have_attribute("aria-label", "Seat 7, sold")

    def test_two_fans_click_the_same_seat_one_gets_it_the_other_is_told_why(
        self, stack: dict[str, str], browser: Browser
    ) -> None:
        a, b = fan(browser), fan(browser, locale="ko-KR")
        sign_in(a, stack["page"], "fan-b")
        sign_in(b, stack["page"], "fan-c")
        for page in (a, b):
            expect(page.locator("#seats")).to_be_visible(timeout=30_000)
            expect(seat(page, "3")).to_have_class("available")
        # Both click while both maps still show seat 3 free (well inside the map's 2 s refresh).
        seat(a, "3").click()
        seat(b, "3").click()
        won = a.get_by_role("button", name="Pay now")
        lost_en = a.locator("#result-title").filter(has_text="Someone else got that seat")
        lost_ko = b.locator("#result-title").filter(has_text="다른 팬이 먼저 예약했습니다")
        expect(won.or_(lost_en)).to_be_visible(timeout=15_000)
        if won.is_visible():  # a got it, so b lost it and is told so in Korean
            expect(lost_ko).to_be_visible(timeout=15_000)
            expect(b.locator("#result-text")).to_contain_text("3번 좌석")
            shot(b, "5-seat-taken")
        else:
            expect(b.get_by_role("button", name="지금 결제")).to_be_visible(timeout=15_000)
            expect(a.locator("#result-text")).to_contain_text("Another fan reserved seat 3")
            shot(a, "5-seat-taken")

    def test_a_hold_left_unpaid_runs_out_and_the_page_says_so(
        self, stack: dict[str, str], browser: Browser
    ) -> None:
        page = fan(browser)
        sign_in(page, stack["page"], "fan-d")
        expect(page.locator("#seats")).to_be_visible(timeout=30_000)
        seat(page, "11").click()
        expect(page.get_by_role("button", name="Pay now")).to_be_visible(timeout=15_000)
        expect(page.locator("#hold-countdown")).to_contain_text("left to pay")
        expect(page.locator("#result-title")).to_have_text(
            "Your hold ran out", timeout=(HOLD_S + 15) * 1000
        )
        expect(page.locator("#result-text")).to_contain_text("seat 11 went back on sale")
        shot(page, "6-hold-expired")

    def test_the_page_speaks_the_browsers_language_switches_and_works_by_keyboard(
        self, stack: dict[str, str], browser: Browser
    ) -> None:
        page = fan(browser, locale="ko-KR")
        page.goto(stack["page"])
        expect(page.locator("html")).to_have_attribute("lang", "ko")
        expect(page.locator("#signin-title")).to_have_text("로그인")
        page.get_by_role("button", name="English").click()
        expect(page.locator("#signin-title")).to_have_text("Sign in")
        expect(page.get_by_role("button", name="English")).to_have_attribute("aria-pressed", "true")
        page.locator("#fan-name").focus()  # then the keyboard alone, as a screen-reader user
        page.keyboard.type("fan-e")
        page.keyboard.press("Enter")
        expect(page.locator("#seats")).to_be_visible(timeout=30_000)
        expect(page.locator("#turn")).to_have_attribute("aria-live", "polite")
        seat(page, "12").focus()
        page.keyboard.press("Enter")
        expect(page.get_by_role("button", name="Pay now")).to_be_focused(timeout=15_000)


def test_chromium_is_debians(browser: Browser) -> None:
    version = subprocess.run(
        [shutil.which("chromium") or "chromium", "--version"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "Chromium" in version and browser.version.split(".")[0] in version
