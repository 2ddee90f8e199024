"""SAP invoice attachments → BILL bill documents (issue 13, part 3) on the simulators.

Each file once, whatever happens (BILL's asynchronous uploads, lost answers, re-runs); a file over 6 MB, of a type
BILL does not take, missing in SAP, or behind an unreachable SAP attachments folder never holds the bill: the bill
is created and the file's record says what did not go and why; only the file is retried.
"""

from datetime import timedelta

import pytest

from connector.models import AttachmentRecord, InvoiceRecord
from connector.sandbox.sap.attachments import file_digest
from connector.sync import documents as documents_module
from connector.sync.documents import DocumentSync
from connector.sync.runner import run_sync
from tests.test_sync_bills import line, prepare

pytestmark = pytest.mark.django_db(transaction=True)
Status = AttachmentRecord.Status
MB = 1024 * 1024


@pytest.fixture
def ready(conn):
    prepare(conn)
    return conn


def cycle(conn):
    return run_sync(conn, ["bills", "documents"])


def invoice_with(sap_sim, files, ref="DOC-1"):
    doc = sap_sim.add_invoice("V1000", [line("6100", "120.00")], num_at_card=ref)
    entry = sap_sim.attach_files(doc["DocEntry"], files)["AbsoluteEntry"]
    return doc["DocEntry"], entry


def bill_id(conn, doc_entry):
    return InvoiceRecord.objects.get(connection=conn, doc_entry=doc_entry).bill_id


def files_of(conn, doc_entry):
    return {r.file_name: r for r in AttachmentRecord.objects.filter(invoice__doc_entry=doc_entry, connection=conn)}


def test_files_are_uploaded_once_through_the_async_status(ready, sap_sim, bill_sim):
    doc, entry = invoice_with(sap_sim, [{"name": "INV-1", "ext": "pdf", "size": MB}, {"name": "scan", "ext": "png",
                                                                                      "size": 30_000}])
    run = cycle(ready)
    assert run.summary["bills"]["created"] == 1
    assert {r.status for r in files_of(ready, doc).values()} == {Status.PROCESSING}  # BILL is still on it
    run = cycle(ready)
    assert run.summary["documents"]["uploaded"] == 2
    stored = {d["name"]: d for d in bill_sim.bill_documents(bill_id(ready, doc))}
    assert set(stored) == {"INV-1.pdf", "scan.png"}
    seed, size, _ = sap_sim.attachment_file(entry, "INV-1.pdf")
    assert stored["INV-1.pdf"]["size"] == MB and stored["INV-1.pdf"]["sha256"] == file_digest(seed, size)
    records = files_of(ready, doc)
    assert all(r.status == Status.UPLOADED and r.document_id.startswith("00h") and r.upload_id.startswith("0du")
               for r in records.values())
    before = bill_sim.requests_by_path.get("POST /v3/documents/bills/{id}", 0)
    cycle(ready)
    assert bill_sim.requests_by_path.get("POST /v3/documents/bills/{id}", 0) == before == 2
    assert len(bill_sim.bill_documents(bill_id(ready, doc))) == 2


def test_a_lost_upload_answer_is_found_on_the_bill_not_sent_twice(ready, sap_sim, bill_sim, monkeypatch):
    monkeypatch.setattr(documents_module, "UPLOAD_GRACE", timedelta(0))
    doc, _ = invoice_with(sap_sim, [{"name": "INV-2", "ext": "pdf", "size": 200_000}])
    bill_sim.lose_next_response("POST", "/v3/documents/bills/")
    cycle(ready)
    record = files_of(ready, doc)["INV-2.pdf"]
    assert record.status == Status.FAILED and "did not answer" in record.last_error
    cycle(ready)
    record.refresh_from_db()
    assert record.status == Status.UPLOADED
    assert bill_sim.requests_by_path.get("POST /v3/documents/bills/{id}") == 1
    assert len(bill_sim.bill_documents(bill_id(ready, doc))) == 1


def test_oversize_unsupported_and_missing_files_do_not_hold_the_bill(ready, sap_sim, bill_sim):
    doc, _ = invoice_with(sap_sim, [{"name": "big-scan", "ext": "pdf", "size": 7 * MB},
                                    {"name": "setup", "ext": "exe", "size": 1000},
                                    {"name": "gone", "ext": "pdf", "size": 1000, "missing": True},
                                    {"name": "ok", "ext": "pdf", "size": 5000}])
    bill_sim.instant_upload_bytes = 10_000  # small files complete at once (as BX-DOC saw)
    run = cycle(ready)
    invoice = InvoiceRecord.objects.get(connection=ready, doc_entry=doc)
    assert invoice.status == "synced" and run.summary["bills"]["held"] == 0
    records = files_of(ready, doc)
    assert records["ok.pdf"].status == Status.UPLOADED
    big = records["big-scan.pdf"]
    assert big.status == Status.REFUSED and "7.0 MB; BILL takes at most 6 MB" in big.last_error
    assert records["setup.exe"].status == Status.REFUSED and "does not take .exe" in records["setup.exe"].last_error
    assert records["gone.pdf"].status == Status.REFUSED, records["gone.pdf"].last_error
    assert "SAP could not give the file" in records["gone.pdf"].last_error
    assert [d["name"] for d in bill_sim.bill_documents(invoice.bill_id)] == ["ok.pdf"]
    # refused files wait for a person: later runs do not retry them
    cycle(ready)
    assert bill_sim.requests_by_path.get("POST /v3/documents/bills/{id}") == 1


def test_unreachable_attachments_folder_is_retried_and_the_replay_sends_only_the_file(ready, sap_sim, bill_sim):
    sap_sim.attachments_folder_reachable = False
    doc, _ = invoice_with(sap_sim, [{"name": "INV-3", "ext": "pdf", "size": 4000}])
    bill_sim.instant_upload_bytes = 10_000
    cycle(ready)
    record = files_of(ready, doc)["INV-3.pdf"]
    assert InvoiceRecord.objects.get(connection=ready, doc_entry=doc).status == "synced"
    assert record.status == Status.FAILED and "attachments folder" in record.last_error
    assert "The attachments folder is not defined" in record.last_error
    sap_sim.attachments_folder_reachable = True
    bills_before = bill_sim.requests_by_path.get("POST /v3/bills/bulk", 0) + bill_sim.requests_by_path.get("POST /v3/bills", 0)
    from connector.clients.bill import BillClient
    from connector.clients.sap import SapClient

    DocumentSync(ready, SapClient.for_connection(ready), BillClient.for_connection(ready)).run(only_ids=[record.pk])
    record.refresh_from_db()
    assert record.status == Status.UPLOADED
    assert bill_sim.requests_by_path.get("POST /v3/bills/bulk", 0) + bill_sim.requests_by_path.get("POST /v3/bills", 0) \
        == bills_before


def test_replay_of_a_refused_attachment_sends_only_that_file(ready, sap_sim, bill_sim):
    from django.core.management import call_command

    doc, entry = invoice_with(sap_sim, [{"name": "later", "ext": "pdf", "size": 2000, "missing": True}], ref="RPL-1")
    bill_sim.instant_upload_bytes = 10_000
    cycle(ready)
    record = files_of(ready, doc)["later.pdf"]
    assert record.status == Status.REFUSED
    seed, size, _ = sap_sim.attachment_file(entry, "later.pdf")
    sap_sim._attachment_files[(entry, "later.pdf")] = (seed, size, False)  # a person put the file back in SAP
    writes_before = {k: v for k, v in bill_sim.requests_by_path.items() if "/v3/bills" in k and not k.startswith("GET")}
    call_command("replay", "demo-sandbox", "--type", "attachment")
    record.refresh_from_db()
    assert record.status == Status.UPLOADED
    assert [d["name"] for d in bill_sim.bill_documents(bill_id(ready, doc))] == ["later.pdf"]
    assert {k: v for k, v in bill_sim.requests_by_path.items() if "/v3/bills" in k and not k.startswith("GET")} \
        == writes_before  # the bill itself was not sent again
