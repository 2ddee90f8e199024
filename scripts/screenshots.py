"""Take the README's screenshots from a running demo (scripts/demo.sh): the status page, the reconciliation page,
a record's timeline and the operators' host page.

Usage: DEMO_ADMIN_PASSWORD=… .venv/bin/python scripts/screenshots.py
"""

import os
import re

from playwright.sync_api import sync_playwright

BASE = os.environ.get("DEMO_URL", "http://127.0.0.1:8000")
OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "screenshots")


def main():
    os.makedirs(OUT, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{BASE}/admin/login/")
        page.fill("#id_username", os.environ.get("DEMO_ADMIN_USER", "admin"))
        page.fill("#id_password", os.environ["DEMO_ADMIN_PASSWORD"])
        page.click("input[type=submit]")
        page.goto(f"{BASE}/admin/connector/connection/?q=demo-sandbox")  # the demo's main connection
        page.get_by_role("link", name="status").first.click()
        page.screenshot(path=os.path.join(OUT, "status-page.png"), full_page=True)
        page.goto(f"{BASE}/admin/connector/connection/?q=demo-sandbox")  # the connection the demo reconciles
        page.get_by_role("link", name="status").first.click()
        page.get_by_role("link", name="open the reconciliation page").click()
        page.screenshot(path=os.path.join(OUT, "reconciliation-page.png"), full_page=True)
        page.goto(f"{BASE}/admin/connector/invoicerecord/?status__exact=synced")
        page.locator("#result_list tbody tr th a").first.click()
        page.wait_for_selector(".ml-timeline")
        page.locator(".ml-timeline").scroll_into_view_if_needed()
        page.screenshot(path=os.path.join(OUT, "invoice-timeline.png"), full_page=True)
        page.goto(f"{BASE}/admin/connector/invoicerecord/?status__exact=held")
        page.screenshot(path=os.path.join(OUT, "held-invoices.png"), full_page=False)
        page.goto(f"{BASE}/admin/host/")  # the operators' page (the demo's admin is a host operator)
        page.screenshot(path=os.path.join(OUT, "host-page.png"), full_page=True)
        browser.close()
    print("\n".join(sorted(f for f in os.listdir(OUT) if re.search(r"\.png$", f))))


if __name__ == "__main__":
    main()
