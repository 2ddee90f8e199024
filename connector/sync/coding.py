"""How an SAP purchase invoice becomes a coded BILL bill (CONTRACT.md, "How a bill is coded").

Pure functions over plain data: `code_invoice(doc, book)` returns the BILL bill body, or the list of
things a person must map first. Money is Decimal throughout; the bill total equals SAP's DocTotal to the
cent: lines after the header discount, tax on the tax account of each tax code, freight on its expense
account, and any rounding difference on the largest line.

Currency (api-facts-addendum §8): SAP currency codes are B1 codes, not ISO ("$" is common for the local
currency). `DocTotal` and the line amounts are in the company's local currency (AdminInfo.LocalCurrency); on a
local-currency document the *Fc fields are 0. A B1 code becomes an ISO code through the connection's
`sap_currency_codes`, then three capital letters are taken as ISO, and "$" is USD unless mapped otherwise. Only
local-currency documents whose ISO code BILL takes are coded; any other is held with the same message as before.
"""

import re
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")
# A difference above this between our lines and SAP's total is not rounding: something was not coded.
ROUNDING_TOLERANCE = Decimal("1.00")
MARKER_RE = re.compile(r"\[SAP (?:(\S+) )?DocEntry (\d+)\]")
COSTING_FIELDS = ("CostingCode", "CostingCode2", "CostingCode3", "CostingCode4", "CostingCode5")
DEFAULT_CURRENCY_CODES = {"$": "USD"}  # B1 code -> ISO when a connection does not say otherwise


def iso_currency(code, codes=None):
    """The ISO 4217 code of a B1 currency code, or '' when unknown (a connection maps it in sap_currency_codes)."""
    code = (code or "").strip()
    mapped = {**DEFAULT_CURRENCY_CODES, **(codes or {})}
    if code in mapped:
        return str(mapped[code]).strip().upper()
    return code if re.fullmatch(r"[A-Z]{3}", code) else ""


def money(value):
    return Decimal(str(value or 0)).quantize(CENT, rounding=ROUND_HALF_UP)


def marker(doc_entry, company=""):
    """Put in every bill's description: finds our bill again even when invoice numbers repeat. The SAP company
    is part of it because several SAP companies may bill into one BILL organization (DocEntry is per company)."""
    company = re.sub(r"\s", "_", company or "")
    return f"[SAP {company} DocEntry {doc_entry}]" if company else f"[SAP DocEntry {doc_entry}]"


def marker_in(text):
    """(company, doc_entry) of the last marker in a bill description, or None."""
    found = MARKER_RE.findall(text or "")
    if not found:
        return None
    company, doc_entry = found[-1]
    return company, int(doc_entry)


@dataclass
class MappingBook:
    """Everything coding needs to know about one connection's mappings (loaded once per run)."""

    accounts: dict = field(default_factory=dict)  # SAP account code -> (bill_id | None, label, status)
    departments: dict = field(default_factory=dict)  # SAP cost centre / rule code -> (bill_id | None, label, status)
    tax_codes: dict = field(default_factory=dict)  # code -> tax account code
    expense_types: dict = field(default_factory=dict)  # code (str) -> (expense account code, name)
    vendors: dict = field(default_factory=dict)  # CardCode -> (bill_vendor_id | None, status, last_error)
    currencies: frozenset = frozenset({"USD"})
    company: str = ""  # the SAP company database: part of each bill's marker
    local_currency: str = ""  # B1 code of the SAP company's local currency (AdminInfo); '' when never read
    currency_codes: dict = field(default_factory=dict)  # the connection's B1 code -> ISO code map
    coding: dict = field(default_factory=lambda: {"department": "first"})  # classification -> SAP source (dimensions.py)
    dimensions: dict = field(default_factory=dict)  # location/class/job -> {SAP code -> (bill_id | None, label, status)}

    @classmethod
    def load(cls, connection):
        from mappings.models import DIMENSION_KINDS, SapAccount, SapCostCenter, SapExpenseType, SapTaxCode, VendorLink

        from .dimensions import coding_of

        book = cls(company=connection.sap_company_db,
                   local_currency=(connection.sap_company or {}).get("local_currency") or "",
                   currency_codes=connection.sap_currency_codes or {}, coding=coding_of(connection))
        for kind, (model, _bill_model, _key) in DIMENSION_KINDS.items():
            if kind not in book.coding:
                continue
            table = book.dimensions[kind] = {}
            for row in model.objects.filter(connection=connection).select_related(model.target_field):
                target = getattr(row, model.target_field)
                table[row.code] = (
                    target.bill_id if target and target.usable else None, f"{row.label[4:]} {row.name}".strip(),
                    "archived" if target and target.archived else "missing" if target and target.missing else "",
                )
        for row in SapAccount.objects.filter(connection=connection).select_related("bill_account"):
            target = row.bill_account
            book.accounts[row.code] = (
                target.bill_id if target and target.usable else None,
                f"{row.format_code or row.code} {row.name}".strip(),
                "archived" if target and target.archived else "missing" if target and target.missing else "",
            )
        for row in SapCostCenter.objects.filter(connection=connection).select_related("bill_department"):
            target = row.bill_department
            book.departments[row.code] = (
                target.bill_id if target and target.usable else None, f"{row.code} {row.name}".strip(),
                "archived" if target and target.archived else "missing" if target and target.missing else "",
            )
        book.tax_codes = dict(SapTaxCode.objects.filter(connection=connection).values_list("code", "tax_account"))
        book.expense_types = {
            row.code: (row.expense_account, row.name) for row in SapExpenseType.objects.filter(connection=connection)
        }
        book.vendors = {
            link.card_code: (link.bill_vendor_id or None, link.status, link.last_error)
            for link in VendorLink.objects.filter(connection=connection)
        }
        return book

    def account(self, code, why, problems):
        return self._lookup(self.accounts, "SAP account", "BILL account", "BILL mapping", code, why, problems)

    def department(self, code, problems):
        return self._lookup(self.departments, "SAP cost center", "BILL department", "BILL department mapping", code, "",
                            problems)

    def dimension(self, kind, code, why, problems):
        """The BILL location / class / job id a configured SAP source value maps to (None with a problem)."""
        from .dimensions import COSTING_FIELD_OF

        source = self.coding[kind]
        words = {"location": "BILL location", "class": "BILL accounting class", "job": "BILL job"}[kind]
        sap_words = (f"SAP cost center (dimension {source[-1]})" if source in COSTING_FIELD_OF
                     else f"SAP {source}")
        entry = self.dimensions.get(kind, {}).get(code)
        if entry is None:
            problems.append(f"{sap_words} {code}{why} is unknown: refresh reference data, then map it to a {words}")
            return None
        bill_id, label, broken = entry
        if bill_id is None:
            state = f"is mapped to a {words} that is {broken}: map it again" if broken else \
                f"has no {words} mapping: map it (kind {kind} in the mapping CSV)"
            problems.append(f"SAP {label}{why} {state}")
        return bill_id

    @staticmethod
    def _lookup(table, sap_words, bill_words, mapping_words, code, why, problems):
        """The mapped BILL id, or None with a problem that says what to map."""
        entry = table.get(code)
        if entry is None:
            problems.append(f"{sap_words} {code}{why} is unknown: refresh reference data, then map it to a {bill_words}")
            return None
        bill_id, label, broken = entry
        if bill_id is None:
            if broken:
                problems.append(f"{sap_words} {label}{why} is mapped to a {bill_words} that is {broken}: map it again")
            elif sap_words == "SAP account":
                problems.append(f"{sap_words} {label}{why} has no {mapping_words}: map it to a {bill_words}")
            else:
                problems.append(f"{sap_words} {label}{why} has no {mapping_words}: map it")
        return bill_id


def invoice_number(doc):
    return (doc.get("NumAtCard") or "").strip() or str(doc.get("DocNum"))


def description(doc, company=""):
    parts = [f"SAP A/P invoice {doc.get('DocNum')}"]
    if (doc.get("NumAtCard") or "").strip():
        parts.append(f"vendor ref {doc['NumAtCard'].strip()}")
    text = " – ".join(parts)
    if doc.get("Comments"):
        text += f": {doc['Comments']}"
    return f"{text[:3900]} {marker(doc['DocEntry'], company)}"


def parse_day(value):
    """A date from '2026-01-15' or '2026-01-15T00:00:00Z' (SAP v1/v2, BILL); None when empty or not a date."""
    try:
        return date.fromisoformat(str(value)[:10]) if value else None
    except ValueError:
        return None


def sap_date(value):
    """SAP v1 gives '2026-01-15', v2 '2026-01-15T00:00:00Z': BILL wants yyyy-MM-dd."""
    return str(value)[:10] if value else None


def code_invoice(doc, book):
    """Return (bill_body, problems). A non-empty problems list means: hold the invoice, nothing is sent."""
    problems = []
    vendor_id, vendor_status, vendor_error = book.vendors.get(doc["CardCode"], (None, None, ""))
    if vendor_id and vendor_status == "invalid":
        # linked before, but SAP says no now (frozen/inactive supplier, no usable address): held until it is fixed
        problems.append(vendor_error or f"SAP supplier {doc['CardCode']} cannot be billed now: see its vendor link")
    elif not vendor_id:
        if vendor_status is None:
            problems.append(f"SAP supplier {doc['CardCode']} has no BILL vendor yet: run the vendors step")
        else:
            problems.append(f"SAP supplier {doc['CardCode']} is not linked to a BILL vendor ({vendor_status}): "
                            f"{vendor_error or 'fix it under Vendor links'}")
    currency = (doc.get("DocCurrency") or book.local_currency or "USD").strip()
    iso = iso_currency(currency, book.currency_codes)
    foreign = bool(book.local_currency) and currency != book.local_currency  # amounts would be the *Fc fields
    if foreign or iso not in book.currencies:
        named = currency if iso in ("", currency) else f"{currency} ({iso})"
        problems.append(f"currency {named}: BILL takes only {', '.join(sorted(book.currencies))} bills for this "
                        "organization: pay this invoice outside BILL or post it in USD")
        if not iso:
            problems.append(f"SAP currency code {currency!r} is not an ISO code: map it in the connection's "
                            f"sap_currency_codes (e.g. {{\"{currency}\": \"USD\"}})")

    lines = coded_lines(doc, book, problems)
    if lines and not problems:
        total = money(doc.get("DocTotal"))
        if total <= 0:
            # BILL refuses such a bill, and in a bulk request it would sink the other 99 with it.
            problems.append(f"SAP total is {total}: BILL takes only bills above zero; settle this invoice in SAP")
    if problems:
        return None, list(dict.fromkeys(problems))
    body = {
        "vendorId": vendor_id,
        "invoice": {"invoiceNumber": invoice_number(doc), "invoiceDate": sap_date(doc.get("TaxDate") or doc.get("DocDate"))},
        "dueDate": sap_date(doc.get("DocDueDate") or doc.get("DocDate")),
        "description": description(doc, book.company),
        "billLineItems": [
            {**ln, "amount": float(ln["amount"])} for ln in lines
        ],
    }
    return body, []


def line_classifications(line, doc, book, number, problems):
    """{departmentId?, locationId?, accountingClassId?, jobId?} of one SAP line, per the connection's `coding`.
    A configured source the line has no value for sends nothing; a value without a mapping is a problem."""
    from .dimensions import line_value

    out = {}
    source = book.coding.get("department", "first")
    if source == "first":
        code = next((line.get(f) for f in COSTING_FIELDS if line.get(f)), None)
    elif source == "none":
        code = None
    else:
        code = line_value(source, line, doc) or None
    if code:
        department = book.department(code, problems)
        if department:
            out["departmentId"] = department
    for kind, key in (("location", "locationId"), ("class", "accountingClassId"), ("job", "jobId")):
        if kind not in book.coding:
            continue
        code = line_value(book.coding[kind], line, doc)
        if code:
            bill_id = book.dimension(kind, code, f" (line {number})", problems)
            if bill_id:
                out[key] = bill_id
    return out


def coded_lines(doc, book, problems, what="invoice"):
    """The BILL lines of an SAP purchase document (invoice or credit memo), amounts as Decimal, adding up to SAP's
    DocTotal (rounding on the largest line); what cannot be coded is appended to `problems`."""
    discount = Decimal(str(doc.get("DiscountPercent") or 0))
    lines = []
    tax_by_code = {}
    for line in doc.get("DocumentLines") or []:
        amount = money(Decimal(str(line.get("LineTotal") or 0)) * (Decimal(100) - discount) / Decimal(100))
        number = int(line.get("LineNum", len(lines))) + 1
        if line.get("AccountCode"):
            account = book.account(line["AccountCode"], f" (line {number})", problems)
        else:
            account = None
            problems.append(f"SAP line {number} has no G/L account (AccountCode): check the {what} in SAP")
        extra = line_classifications(line, doc, book, number, problems)
        lines.append(_line(amount, line.get("ItemDescription") or f"SAP line {number}", account, None, extra))
        tax_code = line.get("TaxCode") or line.get("VatGroup")
        if tax_code and money(line.get("TaxTotal")):
            tax_by_code[tax_code] = tax_by_code.get(tax_code, Decimal(0)) + money(line.get("TaxTotal"))
    for expense in doc.get("DocumentAdditionalExpenses") or []:
        code = str(expense.get("ExpenseCode"))
        amount = money(expense.get("LineTotal"))
        account_code, name = book.expense_types.get(code, (None, f"expense {code}"))
        if not account_code:
            problems.append(f"SAP freight/additional expense {code} has no expense account in SAP's reference data: "
                            "refresh reference data")
        elif amount:
            account = book.account(account_code, f" (expense account of {name})", problems)
            lines.append(_line(amount, f"{name}", account, None))
        tax_code = expense.get("TaxCode") or expense.get("VatGroup")
        if tax_code and money(expense.get("TaxSum")):
            tax_by_code[tax_code] = tax_by_code.get(tax_code, Decimal(0)) + money(expense.get("TaxSum"))
    for tax_code, amount in sorted(tax_by_code.items()):
        tax_account = book.tax_codes.get(tax_code)
        if not tax_account:
            problems.append(f"SAP tax code {tax_code} has no tax account in SAP's reference data: refresh reference "
                            "data or give the tax code a tax account in SAP")
            continue
        account = book.account(tax_account, f" (tax account of tax code {tax_code})", problems)
        lines.append(_line(amount, f"Tax {tax_code}", account, None))

    if not lines:
        problems.append(f"the {what} has no lines to code")
    total = money(doc.get("DocTotal"))
    if lines and not problems and total > 0:
        difference = total - sum((ln["amount"] for ln in lines), Decimal(0))
        if abs(difference) > ROUNDING_TOLERANCE:
            problems.append(f"coded lines add up to {total - difference} but SAP's total is {total}: "
                            f"the difference is not rounding; check the {what} in SAP")
        elif difference:
            largest = max(lines, key=lambda ln: abs(ln["amount"]))
            largest["amount"] += difference  # SAP's own rounding (RoundingDiffAmount) lands on the largest line
    return lines


def _line(amount, text, account, department, extra=None):
    classifications = {}
    if account:
        classifications["chartOfAccountId"] = account
    if department:
        classifications["departmentId"] = department
    classifications.update(extra or {})
    line = {"amount": amount, "description": str(text)[:4000]}
    if classifications:
        line["classifications"] = classifications
    return line


def bill_total(body):
    return sum((money(ln["amount"]) for ln in body["billLineItems"]), Decimal(0))
