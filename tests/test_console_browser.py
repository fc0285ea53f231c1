"""The Aleppo story through the console in a real browser (Debian's Chromium, driven by Selenium
through chromium-driver), against a real server with the demo data: a coordinator proposes a 48-hour
pause, both delegations endorse it, it is approved; a partner files a convoy relying on it and
submits; the coordinator approves with one line reduced; the partner sees the approval; then the
same in Arabic, right to left. axe-core (npm) checks every page in both languages for serious or
critical violations. Screenshots go to test-artifacts/screenshots/ (not committed).

``make test`` installs the browser and axe-core (``make browser``); without them this module fails,
so a machine that cannot run it is noticed, unless AIDACCESS_SKIP_BROWSER=1 says so on purpose.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from aidaccess.clock import utcnow
from tests.server import PASSWORD, aidaccess, cli_environment, running_server

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]
AXE = ROOT / ".venv" / "npm" / "node_modules" / "axe-core" / "axe.min.js"
SHOTS = ROOT / "test-artifacts" / "screenshots"
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
ZONE = "Asia/Damascus"

if os.environ.get("AIDACCESS_SKIP_BROWSER") == "1":
    pytest.skip("AIDACCESS_SKIP_BROWSER=1", allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402


@pytest.fixture(scope="module")
def server(tmp_path_factory, database_url) -> Iterator[str]:  # noqa: ANN001
    """A server of its own on a database of its own, seeded with the demo (Aleppo, the demo users)."""
    from tests.conftest import PG_URL, _create_pg_database, _drop_pg_database

    data = tmp_path_factory.mktemp("console")
    url = _create_pg_database(PG_URL) if PG_URL else f"sqlite:///{data / 'console.sqlite3'}"
    env = cli_environment(url, data)
    try:
        assert aidaccess(env, "db", "upgrade").returncode == 0
        seeded = aidaccess(env, "seed", "demo", "--password-stdin", stdin=PASSWORD)
        assert seeded.returncode == 0, seeded.stderr
        with running_server(env) as (base, _process):
            yield base
    finally:
        if PG_URL:
            _drop_pg_database(url)


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    assert CHROMIUM and CHROMEDRIVER, "Chromium and chromium-driver are missing: run `make browser` (Debian packages)"
    assert AXE.exists(), f"axe-core is missing at {AXE}: run `make browser`"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1280,1100",
        "--disable-gpu",
        "--lang=en-GB",
        "--force-device-scale-factor=1",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.implicitly_wait(5)  # waits for an element to appear, never a fixed pause
    SHOTS.mkdir(parents=True, exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()


class Console:
    def __init__(self, driver: webdriver.Chrome, base: str) -> None:
        self.driver, self.base = driver, base
        self.checked: list[str] = []

    def open(self, path: str) -> None:
        self.driver.get(self.base + path)

    def sign_in(self, email: str) -> None:
        """As another person: the login's cookie goes, the language chosen stays."""
        self.open("/sign-in")
        self.driver.delete_cookie("aidaccess_console")
        self.open("/sign-in")
        self.driver.find_element(By.ID, "username").send_keys(email)
        self.driver.find_element(By.ID, "password").send_keys(PASSWORD)
        self.follow(self.driver.find_element(By.CSS_SELECTOR, "form[action='/sign-in'] button[type=submit]"))
        assert self.driver.find_element(By.CSS_SELECTOR, ".who span").text

    def click(self, text: str) -> None:
        self.follow(
            self.driver.find_element(
                By.XPATH, f"//button[normalize-space()='{text}'] | //a[normalize-space()='{text}']"
            )
        )

    def follow(self, element) -> None:  # noqa: ANN001
        """Click what loads a page, and wait until the page it leaves is gone."""
        self.driver.execute_script("window.leaving = true")
        element.click()
        WebDriverWait(self.driver, 15).until(
            lambda driver: driver.execute_script(
                "return window.leaving === undefined && document.readyState === 'complete'"
            )
        )

    def fill(self, element_id: str, value: str) -> None:
        field = self.driver.find_element(By.ID, element_id)
        field.clear()
        field.send_keys(value)

    def set_value(self, element_id: str, value: str) -> None:
        """A datetime-local control's value: its typed form depends on the browser's locale, its value does not."""
        self.driver.execute_script(
            "arguments[0].value = arguments[1]", self.driver.find_element(By.ID, element_id), value
        )

    def h1(self) -> str:
        return self.driver.find_element(By.TAG_NAME, "h1").text

    def check(self, name: str) -> None:
        """axe-core on the page as it is: no serious or critical violation; and a screenshot."""
        self.driver.execute_script(AXE.read_text())
        violations = self.driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "axe.run(document, {resultTypes: ['violations']}).then(r => done(r.violations.map("
            "v => ({id: v.id, impact: v.impact, nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 3)}))));"
        )
        bad = [v for v in violations if v["impact"] in ("serious", "critical")]
        assert not bad, f"{name}: {bad}"
        language = self.driver.find_element(By.TAG_NAME, "html").get_attribute("lang")
        self.driver.save_screenshot(str(SHOTS / f"{name}-{language}.png"))
        self.checked.append(f"{name}-{language}")


def _local(moment) -> str:  # noqa: ANN001
    from zoneinfo import ZoneInfo

    return moment.astimezone(ZoneInfo(ZONE)).strftime("%Y-%m-%dT%H:%M")


def test_the_aleppo_story_in_english_then_arabic(server, browser):  # noqa: PLR0915
    ui = Console(browser, server)
    start = (utcnow() + timedelta(days=4)).replace(minute=0, second=0, microsecond=0)

    ui.open("/")
    assert browser.current_url.startswith(server + "/sign-in")
    ui.check("sign-in")

    # A coordinator proposes a 48-hour pause in Aleppo.
    ui.sign_in("coordinator@aidaccess.example")
    ui.check("board")
    ui.open("/pauses/new")
    ui.check("pause-form")
    aleppo = browser.find_element(By.XPATH, "//label[normalize-space()='Aleppo']").get_attribute("for")
    browser.find_element(By.ID, aleppo).click()
    ui.set_value("starts_at", _local(start))
    ui.set_value("ends_at", _local(start + timedelta(hours=48)))
    ui.fill("purpose", "A 48-hour humanitarian pause in Aleppo for medical evacuations and food deliveries.")
    ui.click("Propose")
    assert ui.h1().startswith("Humanitarian pause")
    pause_path = browser.current_url.removeprefix(server)
    assert re.fullmatch(r"/pauses/[0-9a-f-]{36}", pause_path)

    # Both delegations endorse it.
    for chair in ("cochair.alpha@aidaccess.example", "cochair.bravo@aidaccess.example"):
        ui.sign_in(chair)
        ui.open("/pauses")
        ui.check("pauses")
        ui.follow(
            browser.find_element(
                By.XPATH,
                f"//h2[normalize-space()='Awaiting your delegation']/following-sibling::ul//a[@href='{pause_path}']",
            )
        )
        ui.check("pause-to-endorse")
        ui.click("Endorse revision 1")
        assert "Endorsed" in browser.find_element(By.TAG_NAME, "main").text

    # The coordinator approves it.
    ui.sign_in("coordinator@aidaccess.example")
    ui.open(pause_path)
    ui.click("Approve")
    assert "Approved" in browser.find_element(By.CSS_SELECTOR, ".facts .badge").text, browser.find_element(
        By.TAG_NAME, "main"
    ).text
    ui.check("pause")

    # A partner files a convoy relying on it, with two cargo lines, and submits it.
    ui.sign_in("partner.wfp@aidaccess.example")
    ui.open("/requests")
    ui.check("requests")
    ui.click("New access request")
    Select(browser.find_element(By.ID, "destination_city_id")).select_by_visible_text("Aleppo")
    ui.fill("origin_name", "Damascus warehouse")
    ui.set_value("planned_departure", _local(start + timedelta(hours=2)))
    ui.set_value("planned_arrival", _local(start + timedelta(hours=10)))
    Select(browser.find_element(By.ID, "pause_id")).select_by_index(1)
    ui.fill("trucks", "40")
    ui.fill("people_targeted", "80000")
    ui.fill("contact-name", "Convoy lead")
    ui.fill("route-0-name", "Ramouseh")
    ui.fill("cargo_lines-0-item", "Food rations")
    ui.fill("cargo_lines-0-quantity", "4000")
    ui.fill("cargo_lines-0-unit", "rations")
    ui.click("Add a cargo line")
    Select(browser.find_element(By.ID, "cargo_lines-1-sector")).select_by_value("health")
    ui.fill("cargo_lines-1-item", "Surgical kits")
    ui.fill("cargo_lines-1-quantity", "20")
    ui.fill("cargo_lines-1-unit", "kits")
    ui.check("request-form")
    ui.click("Save the request")
    request_path = browser.current_url.removeprefix(server)
    assert re.fullmatch(r"/requests/[0-9a-f-]{36}", request_path), browser.find_element(By.TAG_NAME, "main").text
    ui.click("Submit for review")
    assert "Submitted" in browser.find_element(By.CSS_SELECTOR, ".facts .badge").text

    # The coordinator approves it with the surgical kits reduced.
    ui.sign_in("coordinator@aidaccess.example")
    ui.open("/queue")
    ui.check("queue")
    ui.follow(browser.find_element(By.CSS_SELECTOR, f"a[href='{request_path}']"))
    ui.check("request-review")
    kits = browser.find_element(By.XPATH, "//tr[th[normalize-space()='Surgical kits']]//input")
    kits.clear()
    kits.send_keys("15")
    ui.fill("approve-note", "Surgical kits reduced to what the checkpoint will pass.")
    ui.click("Approve, with the quantities above")
    assert "Approved" in browser.find_element(By.CSS_SELECTOR, ".facts .badge").text
    ui.open("/violations")
    ui.check("violations")

    # The partner sees the approval, the reduced line and the note.
    ui.sign_in("partner.wfp@aidaccess.example")
    ui.open(request_path)
    main = browser.find_element(By.TAG_NAME, "main").text
    assert "Approved" in main and "15 kits" in main and "Surgical kits reduced" in main
    ui.check("request")
    ui.open("/")
    # Aleppo's row shows the pause to come (convoys reach a partner's board by the day, as in the API).
    row = browser.find_element(By.XPATH, "//tr[th/a[normalize-space()='Aleppo']]").text
    assert "From " in row, row

    # In Arabic: right to left, Arabic labels and city names, remembered across pages.
    ui.follow(browser.find_element(By.LINK_TEXT, "العربية"))
    html = browser.find_element(By.TAG_NAME, "html")
    assert (html.get_attribute("lang"), html.get_attribute("dir")) == ("ar", "rtl")
    assert "حلب" in browser.find_element(By.TAG_NAME, "main").text
    assert browser.find_element(By.TAG_NAME, "h1").text == "لوحة الوصول"
    ui.check("board")
    for name, path in (
        ("request", request_path),
        ("requests", "/requests"),
        ("pauses", "/pauses"),
        ("pause", pause_path),
        ("request-form", "/requests/new"),
        ("violations", "/violations"),
    ):
        ui.open(path)
        assert browser.find_element(By.TAG_NAME, "html").get_attribute("dir") == "rtl"
        ui.check(name)
    ui.open(request_path)
    assert "موافق عليه" in browser.find_element(By.CSS_SELECTOR, ".facts .badge").text
    ui.open("/")
    ui.follow(browser.find_element(By.LINK_TEXT, "حلب"))
    assert browser.find_element(By.TAG_NAME, "h1").text.startswith("حلب")
    ui.check("city")
    ui.sign_in("coordinator@aidaccess.example")
    assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "ar"  # kept across sign-ins
    for name, path in (("queue", "/queue"), ("pause-form", "/pauses/new"), ("request-review", request_path)):
        ui.open(path)
        ui.check(name)
    ui.open("/?lang=en")
    ui.follow(browser.find_element(By.LINK_TEXT, "Aleppo"))
    ui.check("city")
    ui.open("/sign-in?lang=ar")
    ui.check("sign-in")
    assert len(ui.checked) >= 24
