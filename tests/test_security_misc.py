"""Issue 10, smaller holes: the timeline of a record shows only its own connection's events; log lines are
redacted; repr never shows a secret."""

import logging

from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from audit.models import AuditEvent
from audit.trail import timeline
from connector.models import InvoiceRecord
from tests import test_security_crawl
from tests.test_security_crawl import SECRETS

world = test_security_crawl.world


def test_the_timeline_filters_by_connection(world):
    acme, globex = world["conns"]["acme"], world["conns"]["globex"]
    invoice = InvoiceRecord.objects.get(connection=acme)
    AuditEvent.objects.create(connection=globex, record_type="invoicerecord", record_id=str(invoice.pk), kind="note",
                              message="GLOBEX-EVENT-ON-THE-SAME-ID")
    assert not timeline(invoice).filter(message__contains="GLOBEX").exists()
    client = Client()
    client.force_login(User.objects.get(username="acme-viewer"))
    page = client.get(reverse("admin:connector_invoicerecord_change", args=[invoice.pk])).content.decode()
    assert "ACME-SUPPLIER" in page and "GLOBEX-EVENT-ON-THE-SAME-ID" not in page


def test_repr_and_str_never_show_a_secret(world):
    conn = world["conns"]["acme"]
    from connector.clients.bill import BillClient
    from connector.clients.sap import SapClient

    shown = " ".join([repr(conn), str(conn), repr(SapClient.for_connection(conn)), repr(BillClient.for_connection(conn)),
                      repr(conn.remote_sessions.first())])
    for secret in SECRETS["acme"].values():
        assert secret not in shown


def test_log_lines_are_redacted(caplog):
    from connector.logfilter import RedactSecrets

    record = logging.LogRecord("connector", logging.WARNING, __file__, 1,
                               "login to %s failed: password=%s; B1SESSION=abc123; devKey: K-1", (
                                   "https://manager:hunter2@b1.example/b1s/v1", "hunter2"), None)
    assert RedactSecrets().filter(record)
    text = record.getMessage()
    assert "hunter2" not in text and "abc123" not in text and "K-1" not in text
    assert "b1.example" in text
