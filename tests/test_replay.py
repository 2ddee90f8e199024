"""Replay (issue 6): re-run only the failed step, from a record, in bulk (a job in the queue) or by the CLI.

End to end on the simulators: a replay never makes a second bill or a second SAP payment, and each
record's outcome lands on its timeline.
"""

import pytest
from django.db.models.signals import post_save

from audit import trail
from audit.models import AuditEvent, ReplayJob
from audit.replay import enqueue_replay, enqueue_replays, replay_records, run_job
from connector.clients.bill import BillClient
from connector.clients.errors import TransportError
from connector.connections import apply_connection
from connector.models import InvoiceRecord, PaymentRecord, RemoteSession, WebhookEvent
from connector.sandbox import catalog
from connector.sync.bills import BillIndex
from connector.sync.payments import PaymentSync
from connector.sync.runner import run_sync
from mappings.models import VendorLink
from tests.conftest import connection_file
from tests.test_connections import run_cli
from tests.test_payments import map_everything, sap_payments

GLOBEX_EAST = catalog.BILL_VENDORS[2]["id"]


# --- helpers ------------------------------------------------------------------------------------------------
@pytest.fixture
def ready(conn):
    """Reference data loaded, everything mappable mapped, vendors aligned."""
    run_sync(conn, ["reference"])
    map_everything(conn)
    run_sync(conn, ["vendors"])
    return conn


def bills_of(bill_sim, doc_entry):
    """BILL bills (not archived) made for one SAP invoice, found by our marker."""
    return [b for b in bill_sim.entities("bills")
            if f"[SAP SBODEMOUS DocEntry {doc_entry}]" in (b.get("description") or "") and not b.get("archived")]


def record(conn, doc_entry):
    return InvoiceRecord.objects.get(connection=conn, doc_entry=doc_entry)


def add_held(sap_sim):
    """V1001's invoice on account 6900 Insurance, which BILL's chart of accounts lacks: held."""
    return sap_sim.add_invoice("V1001", [{"AccountCode": "6900", "LineTotal": "10.00", "CostingCode": "ADMIN"}],
                               num_at_card="INS-1")["DocEntry"]


def fix_insurance_mapping(conn):
    """Someone creates 6900 Insurance in BILL; reference data is refreshed and the account mapped."""
    BillClient.for_connection(conn).post("/v3/classifications/chart-of-accounts",
                                         {"name": "Insurance", "account": {"type": "EXPENSE", "number": "6900"}})
    run_sync(conn, ["reference"])
    map_everything(conn)


def messages(rec):
    return [e.message for e in trail.timeline(rec)]


def lose_create_and_lookup(monkeypatch, bill_sim):
    """The next bill create happens in BILL but its answer is lost, and so does the look-up that follows."""
    bill_sim.lose_next_response("POST", "/v3/bills")
    real_ensure = BillIndex.ensure

    def ensure(self, vendor_ids, since, refresh=False):
        if refresh:
            raise TransportError("connection reset while looking the bill up", path="/v3/bills")
        return real_ensure(self, vendor_ids, since, refresh=refresh)

    monkeypatch.setattr(BillIndex, "ensure", ensure)


# --- invoices -------------------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_single_replay_of_a_held_invoice_after_its_mapping_is_fixed(ready, sap_sim, bill_sim):
    doc = add_held(sap_sim)
    run_sync(ready, ["bills"])
    held = record(ready, doc)
    assert held.status == "held" and "6900" in held.last_error and bills_of(bill_sim, doc) == []

    # Replayed before the fix: still held, said so, nothing sent.
    summary = replay_records(held, actor="alice")
    assert (summary["replayed"], summary["succeeded"], summary["still_failing"]) == (1, 0, 1)
    assert record(ready, doc).status == "held" and bills_of(bill_sim, doc) == []
    assert any(m.startswith("Replayed by alice: still held: ") and "6900" in m for m in messages(held))

    fix_insurance_mapping(ready)
    summary = replay_records(InvoiceRecord.objects.filter(pk=held.pk), actor="alice")
    assert (summary["replayed"], summary["succeeded"], summary["still_failing"], summary["nothing_to_do"]) == (1, 1, 0, 0)
    synced = record(ready, doc)
    assert synced.status == "synced" and synced.attempts == 1
    [bill] = bills_of(bill_sim, doc)
    assert synced.bill_id == bill["id"] and str(bill["amount"]) in ("10", "10.0", "10.00")
    outcome = [e for e in trail.timeline(synced) if e.kind == "outcome" and e.message.startswith("Replayed")][-1]
    assert outcome.message == f"Replayed by alice: synced (BILL bill {bill['id']})"
    assert (outcome.trigger, outcome.actor) == ("replay", "alice")

    # Replaying a synced invoice: nothing to replay, not an error, and still one bill.
    again = replay_records(synced, actor="alice")
    assert (again["replayed"], again["nothing_to_do"]) == (0, 1)
    assert len(bills_of(bill_sim, doc)) == 1
    assert messages(synced)[-1] == "Replay requested by alice: nothing to replay (it is synced)"


@pytest.mark.django_db
def test_bulk_replay_of_a_mixed_set_adopts_instead_of_duplicating(ready, sap_sim, bill_sim, monkeypatch):
    done = sap_sim.add_invoice("V1000", [{"AccountCode": "6100", "LineTotal": "100.00", "CostingCode": "ADMIN"}],
                               num_at_card="OK-1")["DocEntry"]
    run_sync(ready, ["bills"])
    assert record(ready, done).status == "synced"

    held = add_held(sap_sim)
    lost = sap_sim.add_invoice("V1000", [{"AccountCode": "6200", "LineTotal": "250.00", "CostingCode": "OPS"}],
                               num_at_card="LOST-1")["DocEntry"]
    lose_create_and_lookup(monkeypatch, bill_sim)
    run_sync(ready, ["bills"])
    monkeypatch.undo()
    failed = record(ready, lost)
    assert failed.status == "failed" and failed.bill_id == "" and failed.next_step == "create"
    assert len(bills_of(bill_sim, lost)) == 1  # BILL did make it
    assert record(ready, held).status == "held"

    fix_insurance_mapping(ready)
    selection = InvoiceRecord.objects.filter(connection=ready, doc_entry__in=[done, held, lost])
    seen = []
    summary = replay_records(selection, actor="bob", progress=seen.append)
    assert (summary["replayed"], summary["succeeded"], summary["still_failing"], summary["nothing_to_do"]) == (2, 2, 0, 1)
    assert sorted((o.record_id, o.result) for o in seen) == sorted(
        [(record(ready, done).pk, "nothing_to_do"), (record(ready, held).pk, "succeeded"),
         (record(ready, lost).pk, "succeeded")])
    adopted = record(ready, lost)
    [bill] = bills_of(bill_sim, lost)
    assert adopted.status == "synced" and adopted.bill_id == bill["id"]
    assert "not created again" in " ".join(messages(adopted))
    assert len(bills_of(bill_sim, held)) == 1 and len(bills_of(bill_sim, done)) == 1

    # The whole selection again: nothing to replay, still one bill each.
    again = replay_records(selection, actor="bob")
    assert (again["replayed"], again["nothing_to_do"]) == (0, 3)
    assert [len(bills_of(bill_sim, d)) for d in (done, held, lost)] == [1, 1, 1]


@pytest.mark.django_db
def test_replaying_a_failed_invoice_twice_makes_one_bill(ready, sap_sim, bill_sim, monkeypatch):
    lost = sap_sim.add_invoice("V1005", [{"AccountCode": "6300", "LineTotal": "75.00", "CostingCode": "WH"}],
                               num_at_card="U-9")["DocEntry"]
    lose_create_and_lookup(monkeypatch, bill_sim)
    run_sync(ready, ["bills"])
    monkeypatch.undo()
    rec = record(ready, lost)
    InvoiceRecord.objects.filter(pk=rec.pk).update(attempts=5)  # automatic retries gave up
    for _ in range(2):
        replay_records(InvoiceRecord.objects.filter(pk=rec.pk), actor="carol")
    assert len(bills_of(bill_sim, lost)) == 1
    rec.refresh_from_db()
    assert rec.status == "synced" and rec.attempts == 0  # adopted: nothing was sent, the count started over


@pytest.mark.django_db
def test_a_flagged_invoice_goes_through_once_the_hand_made_duplicate_is_archived(ready, sap_sim, bill_sim):
    bill = BillClient.for_connection(ready)
    contoso = VendorLink.objects.get(connection=ready, card_code="V1001").bill_vendor_id
    manual = bill.post("/v3/bills", {"vendorId": contoso, "dueDate": "2026-12-01",
                                     "invoice": {"invoiceNumber": "DUP-1", "invoiceDate": "2026-11-01"},
                                     "billLineItems": [{"amount": 5, "description": "entered by hand"}]})
    doc = sap_sim.add_invoice("V1001", [{"AccountCode": "6100", "LineTotal": "5.00", "CostingCode": "ADMIN"}],
                              num_at_card="DUP-1")["DocEntry"]
    run_sync(ready, ["bills"])
    assert record(ready, doc).status == "flagged"
    assert replay_records(record(ready, doc), actor="dan")["still_failing"] == 1  # duplicate still there
    assert record(ready, doc).status == "flagged" and bills_of(bill_sim, doc) == []

    bill.post(f"/v3/bills/{manual['id']}/archive")
    assert replay_records(record(ready, doc), actor="dan")["succeeded"] == 1
    assert record(ready, doc).status == "synced" and len(bills_of(bill_sim, doc)) == 1


# --- payments, webhook events, vendors ---------------------------------------------------------------------------
@pytest.fixture
def paid(ready, sap_sim, bill_sim):
    """One synced invoice of V1005 and a BILL payment of it; returns (invoice record, BILL payment)."""
    doc = sap_sim.add_invoice("V1005", [{"AccountCode": "6300", "LineTotal": "75.00", "CostingCode": "WH"}],
                              num_at_card="U-1")["DocEntry"]
    run_sync(ready, ["bills"])
    rec = record(ready, doc)
    assert rec.status == "synced"
    return rec, bill_sim.pay_bills([(rec.bill_id, "75.00")])


@pytest.mark.django_db
def test_payment_replay_after_a_lost_sap_answer_posts_once(ready, sap_sim, paid, monkeypatch):
    _, payment = paid
    sap_sim.lose_next_response("POST", "VendorPayments")
    real_find, calls = PaymentSync.find_sap_payment, []

    def find(self, payment_id):
        calls.append(payment_id)
        if len(calls) > 1:  # the look-up after the lost answer fails too
            raise TransportError("SAP did not answer", path="VendorPayments")
        return real_find(self, payment_id)

    monkeypatch.setattr(PaymentSync, "find_sap_payment", find)
    run_sync(ready, ["payments"])
    monkeypatch.undo()
    rec = PaymentRecord.objects.get(bill_payment_id=payment["id"])
    assert rec.status == "failed" and len(sap_payments(sap_sim)) == 1

    summary = replay_records(rec, actor="erin")
    assert (summary["succeeded"], summary["still_failing"]) == (1, 0)
    rec.refresh_from_db()
    assert rec.status == "posted" and rec.sap_doc_entry == sap_payments(sap_sim)[0]["DocEntry"]
    assert len(sap_payments(sap_sim)) == 1
    assert messages(rec)[-1].startswith("Replayed by erin: posted (SAP outgoing payment ")
    assert replay_records(rec, actor="erin")["nothing_to_do"] == 1
    assert len(sap_payments(sap_sim)) == 1


@pytest.mark.django_db
def test_a_failed_webhook_event_is_replayed_into_one_sap_payment(ready, sap_sim, paid):
    _, payment = paid
    event = WebhookEvent.objects.create(
        connection=ready, event_id="evt-9", event_type="payment.updated", entity_id=payment["id"],
        status="failed", last_error="worker died", payload={"payment": {"id": payment["id"]}})
    summary = replay_records(event, actor="fay")
    assert summary["succeeded"] == 1, summary
    event.refresh_from_db()
    assert event.status == "processed"
    assert [p["TransferReference"] for p in sap_payments(sap_sim)] == [payment["id"]]
    assert f"payment {payment['id']}: posted" in messages(event)[-1]
    assert replay_records(event)["nothing_to_do"] == 1


@pytest.mark.django_db
def test_vendor_replay_needs_a_decision_for_an_ambiguous_match(ready, bill_sim):
    globex = VendorLink.objects.get(connection=ready, card_code="V1003")
    assert globex.status == "review"
    summary = replay_records(globex, actor="gus")
    assert summary["nothing_to_do"] == 1 and VendorLink.objects.get(pk=globex.pk).status == "review"
    assert "needs a person first" in messages(globex)[-1]

    VendorLink.objects.filter(pk=globex.pk).update(bill_vendor_id=GLOBEX_EAST)  # a person picked one
    summary = replay_records(VendorLink.objects.filter(pk=globex.pk), actor="gus")
    assert summary["succeeded"] == 1, summary
    globex.refresh_from_db()
    assert (globex.status, globex.bill_vendor_id) == ("linked", GLOBEX_EAST)
    assert len([v for v in bill_sim.entities("vendors") if v["name"].startswith("Globex")]) == 2  # none created


# --- the job in the task queue ------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_enqueued_replay_runs_in_the_queue_with_visible_progress(ready, sap_sim, bill_sim,
                                                                 django_capture_on_commit_callbacks):
    docs = [add_held(sap_sim)]
    docs.append(sap_sim.add_invoice("V1000", [{"AccountCode": "6800", "LineTotal": "20.00"}],  # archived in BILL
                                    num_at_card="MKT-1")["DocEntry"])
    docs.append(sap_sim.add_invoice("V1000", [{"AccountCode": "6100", "LineTotal": "30.00"}],
                                    num_at_card="OK-2")["DocEntry"])
    run_sync(ready, ["bills"])
    assert [record(ready, d).status for d in docs] == ["held", "held", "synced"]
    fix_insurance_mapping(ready)

    progress = []

    def watch(sender, instance, update_fields=None, **kwargs):
        if update_fields and "done" in update_fields:
            progress.append((instance.status, instance.done, instance.total))

    post_save.connect(watch, sender=ReplayJob, dispatch_uid="test-replay-progress")
    try:
        with django_capture_on_commit_callbacks(execute=True):
            job = enqueue_replay(InvoiceRecord.objects.filter(connection=ready, doc_entry__in=docs), "hank")
            assert job.status == "queued" and job.total == 3 and job.requested_by == "hank"
    finally:
        post_save.disconnect(dispatch_uid="test-replay-progress", sender=ReplayJob)
    assert progress == [("running", 1, 3), ("running", 2, 3), ("running", 3, 3)]
    job.refresh_from_db()
    assert (job.status, job.done, job.total, job.succeeded, job.failed, job.nothing_to_do) == ("done", 3, 3, 1, 1, 1)
    assert job.started_at and job.finished_at and "1 still failing" in job.message
    [failing] = job.results
    assert failing["record_id"] == record(ready, docs[1]).pk and "6800" in failing["message"]
    assert record(ready, docs[0]).status == "synced" and len(bills_of(bill_sim, docs[0])) == 1
    held = record(ready, docs[1])
    replayed = [e for e in trail.timeline(held) if e.message.startswith("Replayed by hank")]
    assert len(replayed) == 1 and replayed[0].kind == AuditEvent.Kind.OUTCOME
    assert run_job(job.pk) == "job missing, running or finished"  # a redelivered task does nothing


@pytest.mark.django_db
def test_one_job_per_connection_and_a_failing_connection_stops_no_other(ready, sap_sim, bill_sim,
                                                                       django_capture_on_commit_callbacks):
    other, _ = apply_connection(connection_file(sap_sim.url, bill_sim.url, name="other-sandbox",
                                                bill={"password": "wrong"}))
    doc = add_held(sap_sim)
    run_sync(ready, ["bills"])
    fix_insurance_mapping(ready)
    foreign = InvoiceRecord.objects.create(connection=other, doc_entry=doc, card_code="V1001", status="failed")
    selection = InvoiceRecord.objects.filter(pk__in=[record(ready, doc).pk, foreign.pk])
    with django_capture_on_commit_callbacks(execute=True):
        jobs = enqueue_replays(selection, "ivy")
    assert [j.connection_id for j in jobs] == sorted([ready.pk, other.pk])
    by_conn = {j.connection_id: ReplayJob.objects.get(pk=j.pk) for j in jobs}
    assert (by_conn[ready.pk].status, by_conn[ready.pk].succeeded) == ("done", 1)
    broken = by_conn[other.pk]
    assert (broken.status, broken.done, broken.failed) == ("failed", 1, 1)
    assert "BILL login failed" in broken.message and "wrong BILL user name or password" in broken.message
    assert "not done: BILL login failed" in messages(foreign)[-1]
    assert InvoiceRecord.objects.get(pk=foreign.pk).status == "failed"  # untouched
    with pytest.raises(ValueError, match="several connections"):
        enqueue_replay(selection, "ivy")


# --- the CLI ----------------------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_cli_replays_by_status_record_and_doc_entry(ready, sap_sim, bill_sim):
    held = add_held(sap_sim)
    ok = sap_sim.add_invoice("V1000", [{"AccountCode": "6100", "LineTotal": "30.00"}], num_at_card="OK-3")["DocEntry"]
    run_sync(ready, ["bills"])

    code, out, err = run_cli("replay", "demo-sandbox", "--status", "held")
    assert code == 0, err
    assert "still held" in out and "still failing:" in out and f"SAP DocEntry {held}" in out
    assert "1 replayed: 0 succeeded, 1 still failing" in out

    fix_insurance_mapping(ready)
    code, out, err = run_cli("replay", "demo-sandbox", "--record", str(record(ready, held).pk))
    assert code == 0, err
    assert "[1/1]" in out and "): synced (BILL bill" in out and "1 replayed: 1 succeeded" in out
    assert record(ready, held).status == "synced" and len(bills_of(bill_sim, held)) == 1
    events = [e for e in trail.timeline(record(ready, held)) if e.message.startswith("Replayed")]
    assert events[-1].trigger == "replay"

    # Nothing to replay is not an error: a synced invoice, and an empty selection.
    code, out, err = run_cli("replay", "demo-sandbox", "--doc-entry", str(held), str(ok))
    assert code == 0, err
    assert "done: nothing to replay" in out and len(bills_of(bill_sim, held)) == 1
    code, out, err = run_cli("replay", "demo-sandbox")
    assert code == 0 and "nothing to replay" in out
    code, out, err = run_cli("replay", "demo-sandbox", "--type", "payment", "--status", "failed")
    assert code == 0 and "no payment records selected: nothing to replay" in out


@pytest.mark.django_db
def test_cli_bad_input_exits_2_and_changes_nothing(ready, sap_sim, bill_sim):
    other, _ = apply_connection(connection_file(sap_sim.url, bill_sim.url, name="other-sandbox"))
    foreign = InvoiceRecord.objects.create(connection=other, doc_entry=99, card_code="V1000", status="failed")
    cases = [
        (("replay", "no-such-connection"), "no-such-connection"),
        (("replay", "demo-sandbox", "--status", "hled"), "--status: unknown invoice status 'hled'"),
        (("replay", "demo-sandbox", "--type", "bills"), "--type: unknown type 'bills'"),
        (("replay", "demo-sandbox", "--record", str(foreign.pk)), "belongs to another connection"),
        (("replay", "demo-sandbox", "--record", "123456"), "there is no invoice record 123456"),
        (("replay", "demo-sandbox", "--record", "abc"), "--record: 'abc' is not a number"),
        (("replay", "demo-sandbox", "--doc-entry", "424242"), "no invoice with SAP DocEntry 424242"),
        (("replay", "demo-sandbox", "--type", "payment", "--doc-entry", "1"), "only invoices"),
    ]
    for args, words in cases:
        code, out, err = run_cli(*args)
        assert code == 2, (args, code, out, err)
        assert words in err, (args, err)
    assert InvoiceRecord.objects.get(pk=foreign.pk).status == "failed"
    assert not AuditEvent.objects.filter(record_type="invoicerecord", record_id=str(foreign.pk)).exists()


@pytest.mark.django_db
def test_cli_exits_1_when_a_login_fails(ready, sap_sim, bill_sim):
    doc = add_held(sap_sim)
    run_sync(ready, ["bills"])
    ready.bill_password = "not-the-password"
    ready.save()
    RemoteSession.objects.filter(connection=ready).delete()
    code, out, err = run_cli("replay", "demo-sandbox", "--status", "held")
    assert code == 1, (out, err)
    assert "BILL login failed" in err and "not replayed: BILL login failed" in out
    rec = record(ready, doc)
    assert rec.status == "held" and "not done: BILL login failed" in messages(rec)[-1]


# --- the admin ----------------------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_admin_action_queues_a_job_and_the_job_page_shows_it(ready, sap_sim, bill_sim, admin_user, admin_client, rf,
                                                             django_capture_on_commit_callbacks):
    from django.contrib import admin as django_admin

    from audit.admin_actions import replay_selected

    doc = add_held(sap_sim)
    run_sync(ready, ["bills"])
    said = []

    class InvoiceAdmin(django_admin.ModelAdmin):
        actions = [replay_selected]

        def message_user(self, request, message, level=20, **kwargs):
            said.append((level, str(message)))

    model_admin = InvoiceAdmin(InvoiceRecord, django_admin.AdminSite(name="scratch"))
    request = rf.post("/admin/connector/invoicerecord/")
    request.user = admin_user
    assert "replay_selected" in model_admin.get_actions(request)
    with django_capture_on_commit_callbacks(execute=True):
        replay_selected(model_admin, request, InvoiceRecord.objects.filter(connection=ready, doc_entry=doc))
    job = ReplayJob.objects.get()
    assert (job.requested_by, job.status, job.done, job.failed) == (admin_user.username, "done", 1, 1)
    [(level, text)] = said  # written before the transaction committed, so before the queue ran the job
    assert f'queued as <a href="/admin/audit/replayjob/{job.pk}/change/">replay job #{job.pk}</a>' in text
    assert "Replayed by admin: still held" in messages(record(ready, doc))[-1]

    listing = admin_client.get("/admin/audit/replayjob/")
    assert listing.status_code == 200 and b"1/1" in listing.content
    page = admin_client.get(f"/admin/audit/replayjob/{job.pk}/change/")
    assert page.status_code == 200 and b"still held" in page.content
    assert admin_client.get("/admin/audit/replayjob/add/").status_code == 403
