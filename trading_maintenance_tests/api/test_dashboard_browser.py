"""The dashboard in a real headless browser (Debian's chromium driven by Playwright): the numbers it
shows are the API's, and "run now" submits a run that appears in run storage and on the page."""

from __future__ import annotations

import shutil

import dagster as dg
import httpx
import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync"]


@pytest.fixture
def browser():
    playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e .[dev])")
    if not shutil.which("chromium"):
        pytest.skip("Debian's chromium is not installed (.ci/run installs it: apt-get install -y chromium)")
    with playwright_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def test_dashboard_shows_the_apis_numbers_and_run_now_submits_a_run(browser, live_server, instance, tmp_path):
    instance.report_runless_asset_event(dg.AssetMaterialization(
        asset_key="system_health", metadata={"health_score": 72.5, "health_status": "yellow",
                                             "reason_list": dg.MetadataValue.json(["disk: 88% used"])}))
    httpx.post(f"{live_server}/maintenance/tasks/cache_cleanup/run").raise_for_status()
    status = httpx.get(f"{live_server}/maintenance/status").json()

    page = browser.new_page()
    page.goto(f"{live_server}/maintenance/dashboard")
    page.wait_for_selector("body[data-loaded]")
    assert page.inner_text("#health-score") == str(status["health"]["score"])
    assert page.inner_text("#queued-count") == str(len(status["queued_runs"]))
    assert "disk: 88% used" in page.inner_text("#health-reasons")
    assert page.locator("#schedules tr").count() == len(httpx.get(f"{live_server}/maintenance/schedule").json()["items"])

    page.click("tr[data-task='log_rotation'] button.run-now")
    page.wait_for_selector("#message:has-text('submitted log_rotation')")
    run_id = page.inner_text("#message").rsplit(" ", 1)[-1]
    assert instance.get_run_by_id(run_id).job_name == "log_rotation_job"
    page.wait_for_selector(f"#active-runs tr[data-run-id='{run_id}']")
    screenshot = tmp_path / "dashboard.png"
    page.screenshot(path=str(screenshot), full_page=True)
    print(f"dashboard screenshot: {screenshot}")
    assert screenshot.stat().st_size > 0
