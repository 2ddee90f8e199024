"""SAP simulator: Python-side helpers and seeded data."""

from __future__ import annotations

import random
from datetime import timedelta
from decimal import Decimal

from .. import catalog
from .schema import ZERO, SapError
from .values import _copy_row


class SeedingMixin:
    """Python-side helpers for tests and the demo: add/update/cancel/close invoices, seeded data sets."""

    # ------------------------------------------------------------------------------------------- Python helpers
    def add_invoice(self, card_code, lines, *, num_at_card="", doc_date=None, due_date=None, discount_percent=0,
                    freight=None, rounding=False, currency=None, comments="", branch=None) -> dict:
        """Create an A/P invoice as if posted in SAP; raises SapError like the API would. Returns a copy."""
        payload = {"CardCode": card_code, "NumAtCard": num_at_card, "DocDate": doc_date, "DocDueDate": due_date,
                   "DiscountPercent": discount_percent, "Rounding": "tYES" if rounding else "tNO",
                   "DocCurrency": currency, "Comments": comments, "DocumentLines": lines,
                   "DocumentAdditionalExpenses": freight or [], "BPL_IDAssignedToInvoice": branch}
        with self._lock:
            row = self._insert_invoice(self._build_invoice({k: v for k, v in payload.items() if v is not None}))
            return _copy_row(row)

    _UPDATE_ALIASES = {"lines": "DocumentLines", "freight": "DocumentAdditionalExpenses",
                       "discount_percent": "DiscountPercent", "rounding": "Rounding", "num_at_card": "NumAtCard",
                       "doc_date": "DocDate", "due_date": "DocDueDate", "comments": "Comments"}

    def update_invoice(self, doc_entry, **changes) -> dict:
        """Edit an invoice like a user in SAP (SAP property names or add_invoice argument names).

        Lines/freight given here replace the existing ones. Bumps UpdateDate/UpdateTime, recomputes totals.
        """
        body = {self._UPDATE_ALIASES.get(k, k): v for k, v in changes.items()}
        if isinstance(body.get("Rounding"), bool):
            body["Rounding"] = "tYES" if body["Rounding"] else "tNO"
        with self._lock:
            row = self._invoice(doc_entry)
            self._patch_invoice(row, body, replace=True)
            return _copy_row(row)

    def cancel_invoice(self, doc_entry, *, by_current_date=False) -> dict:
        """Cancel an open, unpaid invoice; returns (a copy of) the new cancellation document."""
        with self._lock:
            row = self._invoice(doc_entry)
            if row["CancelStatus"] != "csNo":
                raise SapError(400, -10, f"Document {doc_entry} is already cancelled or is a cancellation")
            if row["PaidToDate"] > 0:
                raise SapError(400, -10, f"Cannot cancel document {doc_entry}; a payment is linked to it")
            if row["DocumentStatus"] != "bost_Open":
                raise SapError(400, -10, f"Document {doc_entry} is closed and cannot be cancelled")
            cancellation = _copy_row(row)
            for line in cancellation.get("DocumentLines") or []:
                # As in SAP: each line of the cancellation document points back at the cancelled invoice's line.
                line.update({"BaseType": 18, "BaseEntry": doc_entry, "BaseLine": line.get("LineNum")})
            row.update({"Cancelled": "tYES", "CancelStatus": "csYes"})
            self._set_document_status(row, "bost_Close")
            if self.touch_original_on_cancel:
                self._touch(row)
            current = self.now()
            cancellation.update({
                "CancelStatus": "csCancellation", "Cancelled": "tNO", "CreationDate": current.date(),
                "UpdateDate": current.date(), "UpdateTime": current.time(), "DocTime": current.time().replace(second=0),
                "DocDate": current.date() if by_current_date else row["DocDate"], "PaidToDate": ZERO})
            self._set_document_status(cancellation, "bost_Close")
            return _copy_row(self._insert_invoice(cancellation))

    def close_invoice(self, doc_entry) -> dict:
        with self._lock:
            row = self._invoice(doc_entry)
            if row["DocumentStatus"] != "bost_Open":
                raise SapError(400, -10, f"Document {doc_entry} is already closed")
            self._set_document_status(row, "bost_Close")
            self._manually_closed.add(doc_entry)
            self._touch(row)
            self._changed("PurchaseInvoices")
            return _copy_row(row)

    def reopen_invoice(self, doc_entry) -> dict:
        with self._lock:
            row = self._invoice(doc_entry)
            if doc_entry not in self._manually_closed or row["CancelStatus"] != "csNo":
                raise SapError(400, -10, f"Document {doc_entry} cannot be reopened")
            self._manually_closed.discard(doc_entry)
            self._set_document_status(row, "bost_Open")
            self._touch(row)
            self._changed("PurchaseInvoices")
            return _copy_row(row)

    def seed_invoices(self, count, *, seed=42, min_lines=1, max_lines=5, start_doc_entry=None) -> list[int]:
        """Add `count` deterministic random service invoices for the USD suppliers; returns their DocEntries."""
        rng = random.Random(seed)
        taxes = [code for code, *_ in catalog.SAP_TAX_CODES]
        accounts = catalog.INVOICE_LINE_ACCOUNTS
        centers = catalog.INVOICE_COST_CENTERS
        with self._lock:
            vendors = [bp["CardCode"] for bp in self._tables["BusinessPartners"].values()
                       if bp["CardType"] == "cSupplier" and bp["Frozen"] == "tNO" and bp["Valid"] == "tYES"
                       and bp["Currency"] == self.local_currency]
            names = {code: acc["Name"] for code, acc in self._tables["ChartOfAccounts"].items()}
            if start_doc_entry is not None:
                if start_doc_entry < self._next_entry["PurchaseInvoices"]:
                    raise ValueError(f"start_doc_entry {start_doc_entry} is already used")
                self._next_entry["PurchaseInvoices"] = start_doc_entry
            today = self.now().date()
            created = []
            for number in range(1, count + 1):
                lines = []
                for _ in range(rng.randint(min_lines, max_lines)):
                    account = accounts[rng.randrange(len(accounts))]
                    lines.append({"AccountCode": account, "ItemDescription": f"{names[account]} #{rng.randint(1, 999)}",
                                  "LineTotal": Decimal(rng.randint(500, 250_000)).scaleb(-2),
                                  "TaxCode": taxes[rng.randrange(len(taxes))],
                                  "CostingCode": centers[rng.randrange(len(centers))]})
                doc_date = today - timedelta(days=rng.randint(0, 90))
                payload = {"CardCode": vendors[rng.randrange(len(vendors))], "DocDate": doc_date,
                           "DocDueDate": doc_date + timedelta(days=rng.choice((15, 30, 45, 60))),
                           "NumAtCard": f"SIM-{seed}-{number:06d}", "DocumentLines": lines}
                created.append(self._insert_invoice(self._build_invoice(payload))["DocEntry"])
            return created

    def seed_demo_extras(self) -> list[int]:
        """The demo's supplier without an address and one invoice of it (held until SAP has an address)."""
        code, name = catalog.SAP_SUPPLIER_WITHOUT_ADDRESS
        with self._lock:
            if code not in self._tables["BusinessPartners"]:
                self._create_business_partner({"CardCode": code, "CardName": name, "CardType": "cSupplier",
                                               "EmailAddress": "ar@nowhere-fasteners.example"})
            invoice = self.add_invoice(code, [{"AccountCode": "6100", "LineTotal": Decimal("58.20"), "TaxCode": "EX",
                                               "CostingCode": "OPS", "ItemDescription": "Bolts and washers"}],
                                       num_at_card="NF-0007")
        return [invoice["DocEntry"]]

    def seed_branch_demo(self) -> list[int]:
        """The branch company of the demo: branches on, local currency "$", invoices in both branches."""
        self.configure_company(local_currency="$", branches=catalog.SAP_BRANCHES)
        specs = [("V1000", "410.00", "NW-BR-101", 1), ("V1000", "265.50", "NW-BR-201", 2),
                 ("V1002", "129.99", "ACME-BR-88", 2)]
        created = []
        with self._lock:
            for vendor, amount, ref, branch in specs:
                line = {"AccountCode": "6100", "LineTotal": Decimal(amount), "TaxCode": "EX", "CostingCode": "ADMIN",
                        "ItemDescription": f"Office supplies ({dict(catalog.SAP_BRANCHES)[branch]})"}
                created.append(self.add_invoice(vendor, [line], num_at_card=ref, branch=branch)["DocEntry"])
        return created

    def seed_demo_invoices(self) -> list[int]:
        """About twenty varied invoices for the demo (each case named in its comment); returns DocEntries."""
        today = self.now().date()

        def line(account, amount, tax="EX", center="ADMIN", text=None, **extra):
            return {"AccountCode": account, "LineTotal": Decimal(amount), "TaxCode": tax, "CostingCode": center,
                    "ItemDescription": text or f"Services {account}", **extra}

        def days_ago(n):
            return today - timedelta(days=n)

        specs = [
            # plain, single line, no tax
            ("V1000", [line("6100", "245.00", text="Copy paper, 50 cases")], {"num_at_card": "NW-10021"}),
            # multi-line over several accounts and cost centres
            ("V1000", [line("6100", "120.00", "TX8", "ADMIN", "Toner"), line("6700", "310.50", "TX8", "OPS",
                        "Printer repair"), line("6600", "89.99", "EX", "SALES", "Courier")],
             {"num_at_card": "NW-10022"}),
            # rent with tax
            ("V1001", [line("6200", "4200.00", "TX8", "ADMIN", "Office rent")], {"num_at_card": "CF-2026-01"}),
            # header discount
            ("V1002", [line("6100", "500.00", "TX8", "SALES", "Desks"), line("6100", "150.00", "TX8", "SALES",
                        "Chairs")], {"num_at_card": "ACME-7781", "discount_percent": Decimal("10")}),
            # freight (additional expense) with tax
            ("V1006", [line("6700", "800.00", "TX5", "WH", "Pallet racking")],
             {"num_at_card": "STARK-5501", "freight": [{"ExpenseCode": 1, "LineTotal": Decimal("75.00"),
                                                        "TaxCode": "TX5"}]}),
            # rounding to a whole amount
            ("V1005", [line("6300", "1234.56", "TX8", "OPS", "Electricity")],
             {"num_at_card": "UMB-0042", "rounding": True}),
            # account 6900 Insurance: unmapped on the BILL side
            ("V1001", [line("6900", "980.00", "EX", "ADMIN", "Property insurance")], {"num_at_card": "CF-INS-26"}),
            # foreign currency vendor (EUR)
            ("V1010", [line("6700", "1500.00", "EX", "WH", "Spare parts")],
             {"num_at_card": "EP-2026-118", "currency": "EUR"}),
            # cost centre IT: unmapped department on the BILL side
            ("V1004", [line("6400", "2400.00", "EX", "IT", "Annual licence")], {"num_at_card": "INI-2026-9"}),
            # indirect distribution rule SPLIT50
            ("V1002", [line("6100", "360.00", "TX8", "SPLIT50", "Shared supplies")], {"num_at_card": "ACME-7790"}),
            # the same vendor reference used twice by the same vendor
            ("V1007", [line("6600", "640.00", "EX", "SALES", "Flights Chicago")], {"num_at_card": "WT-0001"}),
            ("V1007", [line("6600", "212.40", "EX", "SALES", "Hotel Chicago")], {"num_at_card": "WT-0001"}),
            # archived account on the BILL side (Marketing)
            ("V1003", [line("6800", "1750.00", "TX8", "SALES", "Trade show booth")], {"num_at_card": "GLX-301"}),
            # professional fees with region dimension
            ("V1008", [line("6500", "3200.00", "EX", "ADMIN", "Legal advice", CostingCode2="EAST")],
             {"num_at_card": "HL-2026-014"}),
            ("V1004", [line("6400", "99.00", "TX5", "IT", "SaaS seats")], {"num_at_card": "INI-2026-10"}),
            ("V1006", [line("5100", "420.00", "TX5", "WH", "Inbound freight", CostingCode2="WEST")],
             {"num_at_card": "STARK-5520"}),
            ("V1005", [line("6300", "310.25", "TX8", "WH", "Water")], {"num_at_card": "UMB-0043"}),
            ("V1000", [line("6100", "75.10", "TX8", "ADMIN", "Pens")], {"num_at_card": "NW-10030"}),
            ("V1008", [line("6500", "1500.00", "EX", "ADMIN", "Audit fee")], {"num_at_card": "HL-2026-015"}),
            # to be cancelled below (creates a csCancellation document)
            ("V1003", [line("6500", "900.00", "EX", "OPS", "Consulting")], {"num_at_card": "GLX-299"}),
        ]
        # V1009 (frozen) is deliberately absent: SAP refuses documents for frozen business partners.
        created = []
        with self._lock:
            for age, (vendor, lines, options) in zip(range(len(specs), 0, -1), specs, strict=True):
                invoice = self.add_invoice(vendor, lines, doc_date=days_ago(age * 2),
                                           due_date=days_ago(age * 2) + timedelta(days=30), **options)
                created.append(invoice["DocEntry"])
            self.cancel_invoice(created[-1])
        return created
