"""Read both sides of one connection fresh, in bulk and paged (never one request per invoice).

SAP: purchase invoices updated since the window start (header fields only), outgoing payments dated since it.
BILL: bills and payments created since it (100 per page, through the shared 3-in-flight limiter). Whatever
falls outside the window but is named by the other side (a bill whose invoice was last touched earlier, a
payment posted on an earlier day) is fetched in small batches by id, so the window never invents differences.
"""

import re
import time
from dataclasses import dataclass, field

from connector.clients.errors import BillError, SapError
from connector.clients.sap import odata_quote
from connector.sync.bills import sap_state
from connector.sync.coding import marker_in

INVOICE_FIELDS = ["DocEntry", "DocNum", "CardCode", "CardName", "NumAtCard", "DocDueDate", "DocTotal", "PaidToDate",
                  "DocumentStatus", "Cancelled", "CancelStatus", "DocCurrency", "UpdateDate", "UpdateTime"]
PAYMENT_FIELDS = ["DocEntry", "DocNum", "CardCode", "DocDate", "TransferSum", "TransferReference", "Cancelled",
                  "PaymentInvoices"]
BILL_FIELDS = ["id", "archived", "vendorId", "amount", "dueAmount", "paidAmount", "dueDate", "paymentStatus",
               "createdTime"]
SAP_PAGE = 500  # Service Layer honours odata.maxpagesize; header-only rows are small
SAP_BATCH = 20  # ids per `or` filter: keeps the URL short
BILL_BATCH = 50  # ids per `id:in:` filter


@dataclass
class Snapshot:
    """What both sides said, keyed for comparison."""

    since: object
    invoices: dict = field(default_factory=dict)  # DocEntry -> SAP invoice header
    bills: dict = field(default_factory=dict)  # BILL bill id -> bill (ours: our marker, our SAP company)
    bills_by_entry: dict = field(default_factory=dict)  # DocEntry -> [bill, ...]
    payments: dict = field(default_factory=dict)  # BILL payment id -> payment touching at least one of our bills
    other_payment_ids: set = field(default_factory=set)  # BILL payments read that touch none of our bills
    seconds: dict = field(default_factory=dict)  # time spent per read
    sap_payments: dict = field(default_factory=dict)  # TransferReference -> [uncancelled SAP payment, ...]


def _window(since):
    return f"{since.isoformat()}T00:00:00.000Z"


class Reader:
    def __init__(self, connection, sap, bill, *, since, out=None):
        self.connection = connection
        self.sap = sap
        self.bill = bill
        self.since = since
        self.out = out or (lambda line: None)
        self.company = re.sub(r"\s", "_", connection.sap_company_db or "")
        self.snap = Snapshot(since=since)

    def read(self, ledger_bill_ids=()):
        for name, step in (("sap_invoices", self.read_sap_invoices), ("bills", lambda: self.read_bills(ledger_bill_ids)),
                           ("sap_invoices_by_id", self.read_missing_invoices), ("bill_payments", self.read_bill_payments),
                           ("sap_payments", self.read_sap_payments)):
            started = time.monotonic()
            step()
            self.snap.seconds[name] = round(time.monotonic() - started, 2)
        return self.snap

    # --- SAP invoices ----------------------------------------------------------------------------------
    def _sap_pages(self, entity, flt, select):
        return self.sap.iterate_pages(entity, filter=flt, select=select, page_size=SAP_PAGE)

    def read_sap_invoices(self):
        def pages(quoted):
            q = "'" if quoted else ""
            flt = f"UpdateDate ge {q}{self.since.isoformat()}{q}"
            if self.connection.invoice_extra_filter:
                flt = f"({flt}) and ({self.connection.invoice_extra_filter})"
            return self._sap_pages("PurchaseInvoices", flt, INVOICE_FIELDS)

        started = False
        try:
            for page in pages(True):
                started = True
                self._keep_invoices(page)
        except SapError as exc:
            # /b1s/v2 may insist on bare OData V4 date literals (as the sync's delta read knows).
            if started or exc.status != 400 or self.sap.version != "v2":
                raise
            for page in pages(False):
                self._keep_invoices(page)
        self.out(f"  SAP: {len(self.snap.invoices)} purchase invoices updated since {self.since}")

    def _keep_invoices(self, rows):
        for doc in rows:
            if sap_state(doc) != "cancellation":
                self.snap.invoices[int(doc["DocEntry"])] = doc

    def read_missing_invoices(self):
        """Invoices our bills name that the window did not bring (last touched before it), in batches."""
        wanted = sorted(set(self.snap.bills_by_entry) - set(self.snap.invoices))
        for start in range(0, len(wanted), SAP_BATCH):
            chunk = wanted[start:start + SAP_BATCH]
            flt = " or ".join(f"DocEntry eq {entry}" for entry in chunk)
            for page in self._sap_pages("PurchaseInvoices", flt, INVOICE_FIELDS):
                self._keep_invoices(page)

    # --- BILL bills ------------------------------------------------------------------------------------
    def _bill_rows(self, path, filters):
        """Yield (row, filtered) for every row of a BILL list, page by page (never the whole list in memory).
        A filter BILL refuses (its filterable fields are only partly documented) falls back to the unfiltered
        list, which the caller then filters itself."""
        try:
            for row in self.bill.iterate(path, filters=filters):
                yield row, True
            return
        except BillError as exc:
            if exc.status != 400 or not filters:
                raise
        for row in self.bill.iterate(path):
            yield row, False

    def read_bills(self, ledger_bill_ids=()):
        for bill_obj, filtered in self._bill_rows("/v3/bills", [f'createdTime:gte:"{_window(self.since)}"']):
            if filtered or (bill_obj.get("createdTime") or "9999") >= _window(self.since)[:19]:
                self._keep_bill(bill_obj)
        # Bills our ledger knows but the window did not bring (created before it): by id, in batches.
        missing = sorted({b for b in ledger_bill_ids if b} - set(self.snap.bills))
        for start in range(0, len(missing), BILL_BATCH):
            chunk = missing[start:start + BILL_BATCH]
            for bill_obj, _ in self._bill_rows("/v3/bills", [f'id:in:"{",".join(chunk)}"']):
                if bill_obj.get("id") in chunk:
                    self._keep_bill(bill_obj)
        self.out(f"  BILL: {len(self.snap.bills)} bills of ours")

    def _keep_bill(self, bill_obj):
        found = marker_in(bill_obj.get("description"))
        if found is None or found[0] != self.company or bill_obj.get("id") in self.snap.bills:
            return  # not made by us from this SAP company (hand-entered, or another company's)
        kept = {k: bill_obj.get(k) for k in BILL_FIELDS}  # not the line items: memory stays small at 10,000s
        kept["doc_entry"] = found[1]
        self.snap.bills[kept["id"]] = kept
        self.snap.bills_by_entry.setdefault(found[1], []).append(kept)

    # --- payments ----------------------------------------------------------------------------------------
    def read_bill_payments(self):
        for payment, filtered in self._bill_rows("/v3/payments", [f'createdTime:gte:"{_window(self.since)}"']):
            if not filtered and (payment.get("createdTime") or "9999") < _window(self.since)[:19]:
                continue
            bill_ids = {p.get("billId") for p in payment.get("billPayments") or []} or {payment.get("billId")}
            if any(b in self.snap.bills for b in bill_ids):
                self.snap.payments[payment["id"]] = payment
            else:
                self.snap.other_payment_ids.add(payment.get("id"))
        self.out(f"  BILL: {len(self.snap.payments)} payments of our bills")

    def read_sap_payments(self):
        def keep(rows):
            for row in rows:
                if row.get("Cancelled") in ("tYES", "Y"):
                    continue
                ref = (row.get("TransferReference") or "").strip()
                if ref:
                    group = self.snap.sap_payments.setdefault(ref, [])
                    if all(p.get("DocEntry") != row.get("DocEntry") for p in group):
                        group.append(row)

        for page in self._sap_pages("VendorPayments", f"DocDate ge '{self.since.isoformat()}'", PAYMENT_FIELDS):
            keep(page)
        missing = sorted(set(self.snap.payments) - set(self.snap.sap_payments))
        for start in range(0, len(missing), SAP_BATCH):
            chunk = missing[start:start + SAP_BATCH]
            flt = " or ".join(f"TransferReference eq {odata_quote(ref)}" for ref in chunk)
            for page in self._sap_pages("VendorPayments", flt, PAYMENT_FIELDS):
                keep(page)
        self.out(f"  SAP: {sum(len(v) for v in self.snap.sap_payments.values())} outgoing payments with a reference")
