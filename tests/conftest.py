"""Shared fixtures: simulators of SAP and BILL on loopback, and a connection pointing at them."""

import os

import pytest

from connector.sandbox import catalog
from connector.sandbox.server import serve


@pytest.fixture(autouse=True)
def _fresh_limiter():
    """Database slots roll back with each test; Redis keys do not, and connection ids repeat between tests."""
    from django.conf import settings

    from connector import limiter

    if settings.REDIS_URL:
        limiter.get_limiter().clear()
    yield


@pytest.fixture
def sap_sim():
    from connector.sandbox.sap import SapSimulator

    sim = SapSimulator()
    server = serve(sim)
    sim.url = server.url
    yield sim
    server.stop()


@pytest.fixture
def bill_sim():
    from connector.sandbox.bill import BillSimulator

    sim = BillSimulator()
    sim.webhook_sync = True
    server = serve(sim)
    sim.url = server.url
    yield sim
    server.stop()


def connection_file(sap_url, bill_url, **over):
    data = {
        "tenant": "demo",
        "name": "demo-sandbox",
        "sap": {
            "base_url": f"{sap_url}/b1s/v1",
            "company_db": catalog.SAP_COMPANY_DB,
            "username": catalog.SAP_USER,
            "password": catalog.SAP_PASSWORD,
            "payment_account": catalog.SAP_PAYMENT_ACCOUNT,
        },
        "bill": {
            "base_url": f"{bill_url}/connect",
            "username": catalog.BILL_USER,
            "password": catalog.BILL_PASSWORD,
            "organization_id": catalog.BILL_ORG_ID,
            "dev_key": catalog.BILL_DEV_KEY,
        },
        "schedule": {"minutes": 15},
        "sync_from": "2026-01-01",
        "allow_private_network": True,  # the simulators listen on loopback
    }
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return data


@pytest.fixture
def conn(db, sap_sim, bill_sim):
    from connector.connections import apply_connection

    connection, _ = apply_connection(connection_file(sap_sim.url, bill_sim.url))
    return connection


# --- real-browser tests (Playwright driving Debian's Chromium; never downloads a browser) ---------------------
CHROMIUM = "/usr/bin/chromium"
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's sync API runs an event loop


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian chromium is not installed (scripts/install-chromium.sh)")
    return {
        **browser_type_launch_args, "executable_path": CHROMIUM, "headless": True,
        "args": ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"],
    }
