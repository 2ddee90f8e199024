"""A real `manage.py sync` SIGKILLed right after BILL accepted a vendor credit or a bill document, then run again at
once: exactly one vendor credit per credit memo, one document per file (issue 13). Same KillSwitch as
test_crash_safety.py: the kill comes from the simulator the moment the change is made, before the answer."""

import pytest

from connector.models import AttachmentRecord, CreditMemoRecord
from connector.sync.credits import credit_marker_in
from tests.test_crash_safety import killed_sync, sync_again, world  # noqa: F401  (fixture)
from tests.test_sync_bills import line

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_killed_after_bill_accepted_the_vendor_credit_the_next_sync_adopts_it(world):  # noqa: F811
    conn, sap_sim, bill_sim, sap_switch, bill_switch, seeded = world
    invoice = sap_sim.add_invoice("V1000", [line("6100", "90.00")], num_at_card="KILL-INV")
    sync_again()
    memo = sap_sim.add_credit_note("V1000", [line("6100", "30.00")], num_at_card="KILL-CM",
                                   base_invoice=invoice["DocEntry"])
    bill_switch.arm("POST", "/v3/vendor-credits", 1, "after")
    killed_sync(bill_switch)
    assert CreditMemoRecord.objects.get(doc_entry=memo["DocEntry"]).status == "creating"
    seconds, out = sync_again()
    ours = [c for c in bill_sim.entities("vendor-credits") if credit_marker_in(c.get("description"))]
    assert len(ours) == 1 and "adopted 1" in out
    record = CreditMemoRecord.objects.get(doc_entry=memo["DocEntry"])
    assert record.status == "synced" and record.credit_id == ours[0]["id"] and record.applied_bill_id
    bill = next(b for b in bill_sim.entities("bills") if b["id"] == record.applied_bill_id)
    assert [vc["id"] for vc in bill["vendorCredits"]] == [ours[0]["id"]]
    print(f"\nkilled right after BILL accepted the vendor credit: adopted by the next sync in {seconds:.1f} s")


def test_killed_after_bill_accepted_the_document_upload_it_is_not_uploaded_twice(world, monkeypatch):  # noqa: F811
    monkeypatch.setenv("ML_DOCUMENT_UPLOAD_GRACE_SECONDS", "0")  # look for the lost upload at once
    conn, sap_sim, bill_sim, sap_switch, bill_switch, seeded = world
    invoice = sap_sim.add_invoice("V1000", [line("6100", "70.00")], num_at_card="KILL-DOC")
    sap_sim.attach_files(invoice["DocEntry"], [{"name": "kill", "ext": "pdf", "size": 300_000}])
    bill_switch.arm("POST", "/v3/documents/bills/", 1, "after")  # the cycle creates the bill, then uploads
    killed_sync(bill_switch)
    record = AttachmentRecord.objects.get(invoice__doc_entry=invoice["DocEntry"])
    assert record.status == "uploading" and record.upload_attempted_at
    sync_again()
    sync_again()
    record.refresh_from_db()
    assert record.status == "uploaded"
    assert [d["name"] for d in bill_sim.bill_documents(record.bill_id)] == ["kill.pdf"]
    assert bill_sim.requests_by_path["POST /v3/documents/bills/{id}"] == 1
