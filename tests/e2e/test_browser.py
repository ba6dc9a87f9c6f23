"""A real browser: Debian's Chromium, headless, logs in to the Airflow UI.

It signs in on the login page as the admin user, opens the example pipeline's DAG
and finds the run the session triggered, shown as successful. The screenshot is kept
in .e2e-artifacts/ for a person to look at.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest
from harness import ARTIFACTS, Platform, log
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    for binary in (CHROMIUM, CHROMEDRIVER):
        if shutil.which(binary) is None:
            pytest.fail(f"{binary} is missing: apt-get install chromium chromium-driver", False)
    with tempfile.TemporaryDirectory(prefix="e2e-chromium-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in (
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1400,1000",
            f"--user-data-dir={profile}",
        ):
            options.add_argument(flag)
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        try:
            yield driver
        finally:
            driver.quit()


def _screenshot(driver: webdriver.Chrome, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    driver.save_screenshot(str(path))
    log.info("screenshot: %s", path)


def test_admin_logs_in_and_sees_the_successful_run(
    platform: Platform,
    browser: webdriver.Chrome,
    example_dag: str,
    example_run: tuple[str, dict[str, Any]],
) -> None:
    run_id, run = example_run
    assert run["state"] == "success", run
    url = platform.airflow.url
    wait = WebDriverWait(browser, 90)

    browser.get(f"{url}/dags/{example_dag}/runs")
    try:
        username = wait.until(
            expected_conditions.presence_of_element_located((By.NAME, "username"))
        )
    except TimeoutException:
        _screenshot(browser, "airflow-login-missing.png")
        raise
    assert "login" in browser.current_url, browser.current_url
    username.send_keys(platform.airflow.username)
    browser.find_element(By.NAME, "password").send_keys(platform.airflow.password)
    browser.find_element(By.CSS_SELECTOR, "[type=submit]").click()
    wait.until(lambda driver: "login" not in driver.current_url)

    browser.get(f"{url}/dags/{example_dag}/runs/{run_id}")
    try:
        wait.until(
            lambda driver: (
                run_id in driver.find_element(By.TAG_NAME, "body").text
                and "success" in driver.find_element(By.TAG_NAME, "body").text.lower()
            )
        )
    finally:
        _screenshot(browser, "airflow-successful-run.png")
    body = browser.find_element(By.TAG_NAME, "body").text
    assert example_dag in body
    assert "login" not in browser.current_url
