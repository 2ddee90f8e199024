"""`manage.py demo`: the product's main job on the built-in sandbox, step by step, with a printed summary.

Expects the simulators (`manage.py sandbox --seed-demo`) and the web server to be running; scripts/demo.sh
starts all of it. Uses only the operator interface (connection file, mapping CSV, sync, webhooks), so what
it prints is what an operator would see.
"""

import json
import secrets
import tempfile
import time
from pathlib import Path

import requests
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from connector.models import Connection, InvoiceRecord, PaymentRecord, WebhookEvent
from connector.sandbox import catalog

CSV = Path(__file__).resolve().parents[2] / "sandbox" / "demo-mappings.csv"


class Command(BaseCommand):
    help = "Run the demo: connect the sandbox, map, sync invoices to BILL, pay some, post payments back to SAP."

    def add_arguments(self, parser):
        parser.add_argument("--sap-url", default="http://127.0.0.1:8101")
        parser.add_argument("--bill-url", default="http://127.0.0.1:8102")
        parser.add_argument("--branch-sap-url", default="http://127.0.0.1:8103",
                            help="the SAP company with branches (sandbox --branch-sap-port); empty: skip that part")
        parser.add_argument("--admin-user", default="admin")
        parser.add_argument("--admin-password", default="", help="default: a new random one, printed")

    def section(self, title):
        self.stdout.write(self.style.MIGRATE_HEADING(f"\n== {title}"))

    def cli(self, *args):
        self.stdout.write(self.style.SQL_KEYWORD(f"$ python manage.py {' '.join(args)}"))
        try:
            call_command(*args, stdout=self.stdout, stderr=self.stderr)
        except CommandError as exc:
            self.stdout.write(self.style.WARNING(f"(exit {exc.returncode}) {exc}"))

    def handle(self, *args, sap_url, bill_url, branch_sap_url, admin_user, admin_password, **options):
        self.section("1. Connect the customer's SAP company and BILL organization")
        conn_file = {
            "tenant": "demo", "name": "demo-sandbox",
            "sap": {"base_url": f"{sap_url}/b1s/v1", "company_db": catalog.SAP_COMPANY_DB, "username": catalog.SAP_USER,
                    "password": catalog.SAP_PASSWORD, "payment_account": catalog.SAP_PAYMENT_ACCOUNT},
            "bill": {"base_url": f"{bill_url}/connect", "username": catalog.BILL_USER, "password": catalog.BILL_PASSWORD,
                     "organization_id": catalog.BILL_ORG_ID, "dev_key": catalog.BILL_DEV_KEY},
            "schedule": {"minutes": 15}, "sync_from": "2026-01-01",
            "allow_private_network": True,  # the sandbox listens on loopback
        }
        self.conn_file = conn_file
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
            json.dump(conn_file, fh)
        self.cli("connection", "apply", fh.name)
        Path(fh.name).unlink()
        self.cli("connection", "ping", "demo-sandbox")
        self.cli("webhooks", "register", "demo-sandbox")

        self.section("2. Reference data and mappings (CSV)")
        self.cli("sync", "demo-sandbox", "--step", "reference")
        self.cli("mappings", "import", "demo-sandbox", str(CSV))

        self.section("3. Vendors, then approved purchase invoices -> BILL bills")
        self.cli("sync", "demo-sandbox", "--step", "vendors", "--step", "bills")

        self.section("4. BILL pays some bills; its signed webhooks post outgoing payments to SAP")
        self.pay_some(bill_url)
        self.wait_for_webhooks()
        self.cli("sync", "demo-sandbox", "--step", "payments")
        self.show_sap_payments(sap_url)

        self.section("5. A second SAP company: branches on, local currency '$'")
        if branch_sap_url:
            self.branch_company(branch_sap_url, bill_url)
        else:
            self.stdout.write("(skipped: no --branch-sap-url)")

        self.section("6. Month-end: reconcile SAP and BILL (someone archived a bill by hand in BILL)")
        self.month_end()

        self.section("7. The rest of an AP week: a credit memo, an invoice PDF, a line coded to a location")
        self.ap_week(sap_url)

        self.section("8. Summary")
        self.cli("connection", "list")
        conn = Connection.objects.get(tenant__slug="demo", name="demo-sandbox")
        counts = {}
        for status in InvoiceRecord.objects.filter(connection=conn).values_list("status", flat=True):
            counts[status] = counts.get(status, 0) + 1
        self.stdout.write(f"invoices by status: {counts}")
        self.stdout.write(f"payments posted to SAP: {PaymentRecord.objects.filter(connection=conn, status='posted').count()}")
        password = self.ensure_admin(admin_user, admin_password)
        self.ensure_editor("demo-editor", password, conn)
        self.section("Look around")
        self.stdout.write(f"Admin: http://127.0.0.1:8000/admin/   user: {admin_user}   password: {password}"
                          "   (host operator: every tenant)")
        self.stdout.write(f"       accounting editor of tenant 'demo' only:  user: demo-editor   password: {password}")
        self.stdout.write("Held invoices say what to map; map them under 'SAP G/L account mappings', then replay.")

    def ap_week(self, sap_url):
        """Dimension 2 (regions) → BILL locations; a credit memo applied to its invoice's bill; a bill with its PDF."""
        from connector.clients.bill import BillClient
        from connector.models import AttachmentRecord, CreditMemoRecord

        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
            json.dump({**self.conn_file, "coding": {"department": "dimension1", "location": "dimension2"}}, fh)
        self.cli("connection", "apply", fh.name)
        Path(fh.name).unlink()
        self.cli("sync", "demo-sandbox", "--step", "reference")
        with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False) as fh:
            fh.write("kind,sap_code,bill_id\nlocation,EAST,loc01SBX00000000EAST\nlocation,WEST,loc01SBX00000000WEST\n")
        self.cli("mappings", "import", "demo-sandbox", fh.name)
        Path(fh.name).unlink()
        seeded = requests.post(f"{sap_url}/_sim/seed_ap_documents_demo", timeout=30).json()
        self.stdout.write(f"(in SAP) invoice DocEntry {seeded['located_invoice']} with region EAST and a PDF; "
                          f"credit memo DocEntry {seeded['credit_memo']} based on invoice {seeded['credited_invoice']}")
        self.cli("sync", "demo-sandbox")
        self.cli("sync", "demo-sandbox", "--step", "credits", "--step", "documents")  # BILL finished the upload
        conn = Connection.objects.get(tenant__slug="demo", name="demo-sandbox")
        bill = BillClient.for_connection(conn)
        memo = CreditMemoRecord.objects.filter(connection=conn, doc_entry=seeded["credit_memo"]).first()
        if memo and memo.applied_bill_id:
            current = bill.get(f"/v3/bills/{memo.applied_bill_id}")
            self.stdout.write(f"credit memo {memo.doc_num} -> BILL vendor credit {memo.credit_id} ({memo.doc_total}) "
                              f"applied to bill {memo.applied_bill_id}: amount {current['amount']}, due "
                              f"{current['dueAmount']}")
        elif memo:
            self.stdout.write(f"credit memo {memo.doc_num}: {memo.get_status_display()} {memo.last_error}")
        located = InvoiceRecord.objects.filter(connection=conn, doc_entry=seeded["located_invoice"]).first()
        if located and located.bill_id:
            lines = bill.get(f"/v3/bills/{located.bill_id}")["billLineItems"]
            self.stdout.write(f"invoice {located.doc_num} -> bill {located.bill_id}, line classifications: "
                              + "; ".join(str(li.get("classifications")) for li in lines))
            for doc in AttachmentRecord.objects.filter(invoice=located):
                self.stdout.write(f"  attachment {doc.file_name} ({doc.size} bytes): {doc.get_status_display()}"
                                  f" {doc.document_id or doc.last_error}")

    def branch_company(self, sap_url, bill_url):
        """Its invoices carry their SAP branch; one BILL payment over two branches becomes one SAP payment per
        branch, each with BPLID. The supplier without an address (first company) is shown held, with what to fill."""
        from mappings.models import VendorLink

        held = VendorLink.objects.filter(connection__name="demo-sandbox", card_code=catalog.SAP_SUPPLIER_WITHOUT_ADDRESS[0]
                                         ).first()
        if held is not None:
            self.stdout.write(f"held supplier {held.card_code} ({held.get_status_display()}): {held.last_error}")
        conn_file = {
            "tenant": "demo", "name": "demo-branches",
            "sap": {"base_url": f"{sap_url}/b1s/v2", "company_db": catalog.SAP_BRANCH_COMPANY_DB,
                    "username": catalog.SAP_USER, "password": catalog.SAP_PASSWORD,
                    "payment_account": catalog.SAP_PAYMENT_ACCOUNT, "currency_codes": {"$": "USD"}},
            "bill": {"base_url": f"{bill_url}/connect", "username": catalog.BILL_USER, "password": catalog.BILL_PASSWORD,
                     "organization_id": catalog.BILL_BRANCH_ORG_ID, "dev_key": catalog.BILL_DEV_KEY},
            "schedule": {"minutes": 15}, "sync_from": "2026-01-01", "allow_private_network": True,
        }
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
            json.dump(conn_file, fh)
        self.cli("connection", "apply", fh.name)
        Path(fh.name).unlink()
        self.cli("sync", "demo-branches", "--step", "reference")
        self.cli("mappings", "import", "demo-branches", str(CSV))
        self.cli("sync", "demo-branches", "--step", "vendors", "--step", "bills")
        conn = Connection.objects.get(tenant__slug="demo", name="demo-branches")
        company = conn.sap_company or {}
        self.stdout.write(f"SAP company {conn.sap_company_db}: local currency {company.get('local_currency')!r} "
                          f"(USD), branches {company.get('branches')}")
        records = list(InvoiceRecord.objects.filter(connection=conn, status="synced").order_by("doc_entry"))
        for r in records:
            self.stdout.write(f"  invoice {r.doc_num} {r.card_code} {r.doc_total} {r.currency} branch {r.branch_id} "
                              f"{r.branch_name} -> bill {r.bill_id}")
        two = [r for r in records if r.card_code == "V1000"][:2]
        if len({r.branch_id for r in two}) == 2:
            plan = [(r.bill_id, str(r.doc_total)) for r in two]
            answer = requests.post(f"{bill_url}/_sim/pay", json={"payments": plan, "org_id": catalog.BILL_BRANCH_ORG_ID},
                                   timeout=30)
            answer.raise_for_status()
            self.stdout.write(f"BILL paid {answer.json()['id']} over two branches: "
                              + ", ".join(f"bill {b} {a}" for b, a in plan))
        self.cli("sync", "demo-branches", "--step", "payments")
        rows = requests.get(f"{sap_url}/_sim/entities/VendorPayments", timeout=30).json()
        rows = rows.get("value", rows) if isinstance(rows, dict) else rows
        self.stdout.write("SAP outgoing payments of the branch company (one per branch):")
        for row in rows:
            applied = ", ".join(f"invoice DocEntry {p['DocEntry']}: {p['SumApplied']}" for p in row.get("PaymentInvoices", []))
            self.stdout.write(f"  DocNum {row['DocNum']} BPLID {row.get('BPLID')} ({row.get('BPLName')}) "
                              f"{row['CardCode']} {row['TransferSum']} ref {row.get('TransferReference')} -> {applied}")

    def month_end(self):
        """Leave one difference for the reconciliation to find; alerts go to the tenant's recipient (console)."""
        from alerts.models import AlertRecipient
        from connector.clients.bill import BillClient

        conn = Connection.objects.get(tenant__slug="demo", name="demo-sandbox")
        AlertRecipient.objects.get_or_create(tenant=conn.tenant, email="ap@demo.example")
        unpaid = InvoiceRecord.objects.filter(connection=conn, status="synced", bill_payment_status__in=["", "UNPAID"]
                                              ).order_by("-doc_entry").first()
        if unpaid is not None:
            BillClient.for_connection(conn).post(f"/v3/bills/{unpaid.bill_id}/archive")
            self.stdout.write(f"(in BILL, by hand) archived bill {unpaid.bill_id} of SAP invoice {unpaid.doc_num}")
        self.cli("reconcile", "demo-sandbox")

    def pay_some(self, bill_url):
        conn = Connection.objects.get(tenant__slug="demo", name="demo-sandbox")
        synced = list(InvoiceRecord.objects.filter(connection=conn, status="synced").order_by("doc_entry"))
        by_vendor = {}
        for record in synced:
            by_vendor.setdefault(record.coded["vendorId"], []).append(record)
        plans = []
        for records in list(by_vendor.values())[:3]:
            if len(records) >= 2:  # one payment for two bills of the same vendor
                plans.append([(r.bill_id, str(r.doc_total)) for r in records[:2]])
            else:  # a partial payment
                plans.append([(records[0].bill_id, str((records[0].doc_total / 2).quantize(records[0].doc_total)))])
        for plan in plans:
            answer = requests.post(f"{bill_url}/_sim/pay", json={"payments": plan}, timeout=30)
            answer.raise_for_status()
            paid = answer.json()
            self.stdout.write(f"BILL paid {paid['id']}: " + ", ".join(f"bill {b} {a}" for b, a in plan))

    def wait_for_webhooks(self, seconds=20):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            received = WebhookEvent.objects.filter(event_type__startswith="payment.")
            if received.exists() and not received.filter(status="pending").exists():
                break
            time.sleep(0.5)
        events = WebhookEvent.objects.filter(event_type__startswith="payment.")
        self.stdout.write(f"webhooks received and verified: {events.count()} "
                          f"({events.filter(status='processed').count()} processed by the task queue)")

    def show_sap_payments(self, sap_url):
        rows = requests.get(f"{sap_url}/_sim/entities/VendorPayments", timeout=30).json()
        rows = rows.get("value", rows) if isinstance(rows, dict) else rows
        self.stdout.write("SAP outgoing payments (VendorPayments) now in the SAP simulator:")
        for row in rows:
            applied = ", ".join(f"invoice DocEntry {p['DocEntry']}: {p['SumApplied']}" for p in row.get("PaymentInvoices", []))
            self.stdout.write(f"  DocNum {row['DocNum']} {row['CardCode']} {row['TransferSum']} ref "
                              f"{row.get('TransferReference')} -> {applied}")

    def ensure_editor(self, username, password, conn):
        from connector.models import Membership

        user, _ = get_user_model().objects.get_or_create(username=username)
        user.is_staff, user.is_superuser = True, False
        user.set_password(password)
        user.save()
        Membership.objects.update_or_create(user=user, defaults={"tenant": conn.tenant, "role": "editor"})

    def ensure_admin(self, username, password):
        password = password or secrets.token_urlsafe(9)
        user, _ = get_user_model().objects.get_or_create(username=username, defaults={"email": "admin@demo.example"})
        user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()
        return password
