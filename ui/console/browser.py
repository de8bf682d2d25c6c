"""Driving the operator console in a real headless Chromium (Debian's ``chromium`` and ``chromium-driver``, through
Selenium). Used by the console's end-to-end test (tests/ui/test_console_e2e.py) and by ``python -m
ui.console.browser`` which takes the README's screenshots of every page from a running ``ama console``."""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path
from typing import Any

PAGES = {"live": "", "decisions": "decisions", "approvals": "approvals", "chat": "chat", "scenarios": "scenarios"}


def available() -> str | None:
    """None when a headless Chromium can be driven here, else why not."""
    missing = [name for name in ("chromium", "chromedriver") if shutil.which(name) is None]
    if missing:
        return f"not installed: {', '.join(missing)} (Debian packages chromium and chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "the selenium package is not installed"
    return None


def start_browser(width: int = 1500, height: int = 1100) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", f"--window-size={width},{height}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(executable_path=shutil.which("chromedriver")), options=options)


def wait_for(condition: Any, timeout_s: float = 60.0, what: str = "the page") -> Any:
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            found = condition()
            if found:
                return found
        except Exception as exc:  # elements come and go while Streamlit re-renders
            last = exc
        time.sleep(0.3)
    raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}" + (f" ({last})" if last else ""))


def open_page(driver: Any, base_url: str, page: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(f"{base_url}/{PAGES[page]}")
    wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "h2"), what=f"the {page} page")
    settle(driver)


def settle(driver: Any, quiet_s: float = 1.5, timeout_s: float = 60.0) -> None:
    """Wait until Streamlit has stopped running the script (its status widget gone) for ``quiet_s``."""
    from selenium.webdriver.common.by import By

    deadline, quiet_since = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline:
        running = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stStatusWidget"]')
        if running:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= quiet_s:
            return
        time.sleep(0.2)


def type_into(driver: Any, label: str, text: str) -> None:
    """Type into the text input labelled ``label`` and commit it (Enter), as an operator would."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    box = wait_for(lambda: driver.find_element(By.CSS_SELECTOR, f'input[aria-label="{label}"]'), what=f"the {label!r} input")
    box.clear()
    box.send_keys(text, Keys.ENTER)
    settle(driver)


def sign_in(driver: Any, name: str, token: str) -> None:
    type_into(driver, "Operator name", name)
    type_into(driver, "Console token", token)


def click_button(driver: Any, text: str) -> None:
    from selenium.webdriver.common.by import By

    def enabled() -> Any:
        for button in driver.find_elements(By.XPATH, f"//button[.//p[normalize-space()='{text}']]"):
            if button.is_enabled():
                return button
        return None

    wait_for(enabled, what=f"an enabled {text!r} button").click()
    settle(driver)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Screenshots of every console page from a running `ama console`.")
    parser.add_argument("--url", default="http://127.0.0.1:8501", help="the console's address (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=Path("docs/console"), help="folder for the PNGs (default: %(default)s)")
    parser.add_argument("--operator", default="", help="sign in as this operator (with --token)")
    parser.add_argument("--token", default="", help="the console token")
    args = parser.parse_args(argv)
    why = available()
    if why:
        raise SystemExit(f"error: cannot drive a browser: {why}")
    args.out.mkdir(parents=True, exist_ok=True)
    driver = start_browser()
    try:
        for page in PAGES:
            open_page(driver, args.url, page)
            if args.operator:
                sign_in(driver, args.operator, args.token)
            height = driver.execute_script("return Math.max(document.body.scrollHeight, 1100)")
            driver.set_window_size(1500, min(int(height) + 200, 4000))
            settle(driver)
            driver.save_screenshot(str(args.out / f"{page}.png"))
            print(args.out / f"{page}.png")
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
