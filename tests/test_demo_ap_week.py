"""The demo's AP-week part (manage.py demo, section 7) on the test simulators: it shows a credit memo applied to its
invoice's bill, a bill with its PDF, and a line coded to a BILL location."""

import io

import pytest

from connector.management.commands.demo import Command
from tests.conftest import connection_file
from tests.test_sync_bills import prepare

pytestmark = pytest.mark.django_db(transaction=True)


def test_demo_shows_credit_pdf_and_location(conn, sap_sim, bill_sim):
    prepare(conn)
    out = io.StringIO()
    command = Command(stdout=out, stderr=io.StringIO())
    command.conn_file = connection_file(sap_sim.url, bill_sim.url)
    command.ap_week(sap_sim.url)
    text = out.getvalue()
    assert "applied to bill" in text and "amount 400.0, due 300.0" in text, text[-3000:]
    assert "'locationId': 'loc01SBX00000000EAST'" in text
    assert "attachment DEMO-LOC-1.pdf (150000 bytes): uploaded 00h" in text
