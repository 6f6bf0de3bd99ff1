"""The watch's pages in headless Chromium, as a user sees them while runs go on."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from .conftest import Watch, Writer
from .pixels import png_colours

#: The timeline's colours (those of ``tracebus timeline``'s page).
SUCCESS, FAILED, RUNNING = (0x2E, 0x9E, 0x5B), (0xD7, 0x26, 0x3D), (0xE8, 0xA3, 0x17)


def wait_for(driver: Any, condition: Callable[[Any], object], what: str) -> None:
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        WebDriverWait(driver, 20, poll_frequency=0.1).until(condition)
    except TimeoutException:
        raise AssertionError(f"the page never showed {what}: {page_state(driver)}") from None


def page_state(driver: Any) -> dict[str, str]:
    """What the page's script recorded in #state after its last update."""
    found: dict[str, str] = driver.execute_script(
        "return Object.assign({}, document.getElementById('state').dataset)"
    )
    return found


def shown(driver: Any, element_id: str) -> str:
    text: str = driver.execute_script(
        "return document.getElementById(arguments[0]).textContent", element_id
    )
    return text


def listed(driver: Any) -> dict[str, str]:
    """The runs list's rows: each workflow's status."""
    rows: list[list[str]] = driver.execute_script(
        "return [...document.querySelectorAll('#runs tbody tr')]"
        ".map((row) => [row.querySelector('a').textContent, row.dataset.status])"
    )
    return dict(rows)


def loaded_once(driver: Any) -> bool:
    """Whether the page is still the one loaded when ``mark_loaded`` ran (no reload)."""
    marked: bool = driver.execute_script(
        "return window.loadedOnce === true"
        " && performance.getEntriesByType('navigation').length === 1"
    )
    return marked


def mark_loaded(driver: Any) -> None:
    driver.execute_script("window.loadedOnce = true")


def test_run_page_grows_as_the_run_goes_on(
    tmp_path: Path, writers: list[Writer], watches: list[Watch], browser: Any
) -> None:
    out = tmp_path / "runs"
    writer = Writer(out, "live_flow", 4)
    writers.append(writer)
    writer.send("start fetch")
    watch = Watch(str(out), "--port", "0")
    watches.append(watch)

    browser.get(watch.url)
    wait_for(browser, lambda d: page_state(d).get("runs") == "1", "the run in the list")
    link = browser.find_element("css selector", "#runs tbody a")
    assert link.text == "live_flow"
    link.click()
    wait_for(browser, lambda d: page_state(d).get("running") == "1", "fetch running")
    mark_loaded(browser)
    assert page_state(browser)["bars"] == "1" and shown(browser, "workflow") == "live_flow"

    writer.send("ok fetch 0.5")
    writer.send("start parse")
    writer.send("start load")
    wait_for(
        browser,
        lambda d: page_state(d)["bars"] == "3" and page_state(d)["running"] == "2",
        "fetch ended and two nodes running",
    )
    writer.send("fail parse ValueError: bad row 7")
    wait_for(browser, lambda d: "bad row 7" in shown(d, "failures"), "the failure")
    assert page_state(browser)["failed"] == "1"
    writer.send("log disk almost full")
    wait_for(browser, lambda d: "disk almost full" in shown(d, "log"), "the log line")
    writer.send("usage load 1200 340 0.25")
    wait_for(browser, lambda d: shown(d, "tokens") == "1200 / 340", "the tokens")
    assert shown(browser, "cost") == "$0.7500"
    state = page_state(browser)
    assert state["status"] == "running" and state["done"] == "2" and state["running"] == "1"
    # every bar has its status colour, read back from the canvas
    assert state["bars"] == state["shown"] == "3"

    screenshot = tmp_path / "run-page.png"
    assert browser.save_screenshot(str(screenshot))
    width, height, colours = png_colours(screenshot.read_bytes())
    assert (width, height) == tuple(browser.execute_script(
        "return [window.innerWidth * devicePixelRatio, window.innerHeight * devicePixelRatio]"
    ))  # fmt: skip
    for colour in (SUCCESS, FAILED, RUNNING):
        assert colours[colour] > 200, f"{colour} is not on the screenshot"

    writer.send("ok load")
    writer.send("end")
    wait_for(browser, lambda d: page_state(d)["status"] == "complete", "the run complete")
    assert shown(browser, "status") == "complete, 1 failed"
    state = page_state(browser)
    assert state["running"] == "0" and state["bars"] == state["shown"] == "3"
    assert loaded_once(browser)


def test_runs_list_shows_a_new_run_when_it_starts(
    tmp_path: Path, writers: list[Writer], watches: list[Watch], browser: Any
) -> None:
    out = tmp_path / "runs"
    first = Writer(out, "step_01_first", 2)
    writers.append(first)
    watch = Watch(str(out), "--port", "0")
    watches.append(watch)
    browser.get(watch.url)
    wait_for(browser, lambda d: page_state(d).get("runs") == "1", "the first run")
    mark_loaded(browser)
    second = Writer(out, "step_02_second", 2)
    writers.append(second)
    wait_for(
        browser,
        lambda d: page_state(d)["runs"] == "2" and page_state(d)["running"] == "2",
        "the second run, running",
    )
    first.send("start a")
    first.send("ok a")
    first.send("end")
    wait_for(
        browser,
        lambda d: listed(d) == {"step_01_first": "complete", "step_02_second": "running"},
        "the first run complete",
    )
    assert loaded_once(browser)
