"""Stateful simulator of the SAP Business One Service Layer (REST/OData) as a WSGI app.

Tests, the demo and the benchmarks talk to this instead of a real SAP system. It follows the fact sheet
`/work/shared/reference/sap-b1-service-layer.md`: service roots `/b1s/v1` (OData V3) and `/b1s/v2` (OData V4)
sharing data and sessions, Login/Logout with the documented cookies, idle session expiry, server-driven paging
with relative nextLinks, the OData query subset SAP supports, the SAP error shapes and codes, purchase invoices,
vendor payments and the master data the connector reads (catalog.py). Knobs inject latency, 5xx errors, lost
responses and expired sessions, and `/_sim/...` endpoints let another process drive them.

Internally rows hold Python values (Decimal money, `date`, `time`, enum names); they are rendered per
version on the way out (numbers as JSON floats, v1 dates "2026-01-15", v2 "2026-01-15T00:00:00Z",
times "13:45:07" in both).

Document totals (Decimal, ROUND_HALF_UP to cents):
  * header discount D % applies to every line: discounted = round(LineTotal * (1 - D/100), 2);
  * line TaxTotal = round(discounted * rate/100, 2); freight TaxSum = round(freight LineTotal * rate/100, 2);
  * TotalDiscount = sum(LineTotal) - sum(discounted); VatSum = sum(line TaxTotal) + sum(freight TaxSum);
  * before rounding: sum(discounted) + sum(freight) + VatSum; with Rounding tYES, RoundingDiffAmount =
    that sum rounded to a whole unit minus the sum (else 0); DocTotal includes the rounding difference.
  For a foreign-currency document (DocCurrency != USD) the amounts given are in the document currency and the
  totals above become the *FC fields (DocTotalFc, VatSumFc, RowTotalFC...); the local-currency fields are the FC
  values times DocRate rounded field by field, as SAP keeps both.

Simulator choices where the fact sheet is silent or UNCONFIRMED (all documented at their code too):
  * Time properties (UpdateTime, CreateTime, DocTime) compare at minute precision in $filter, both sides
    truncated (the guide's "only HOUR/MINUTE parts are effective"; whether seconds count is UNCONFIRMED).
  * Server-local naive time from `clock`; session idle expiry uses the monotonic clock, not `clock`.
  * v2 dates render as "YYYY-MM-DDT00:00:00Z" (UNCONFIRMED), times as "HH:MM:SS".
  * A full last page still carries a nextLink; with $top no nextLink once $top is used up.
  * Posting a payment bumps the paid invoices' UpdateDate/UpdateTime (UNCONFIRMED in SAP).
  * VendorPayments: sum(SumApplied) must equal TransferSum + CashSum (SAP would post the difference on
    account; UNCONFIRMED), DocType defaults to rSupplier, only bank transfer/cash and it_PurchaseInvoice lines.
  * Cancelling: the original gets Cancelled tYES / CancelStatus csYes (SAP's enum has csYes/csNo/csCancellation),
    the cancellation document csCancellation and the original's DocDate (CancelbyCurrentSystemDate uses today).
  * PATCH on a posted invoice may change lines and amounts (real SAP forbids most such edits; tests use it to
    model changes), except on cancelled/closed/partly paid invoices (-1029 "Field cannot be updated").
  * Unknown resource: 404 -1000 "Resource not found for the segment 'X'."; business-rule wording below is the
    simulator's own where the sheet gives no exact text.

  * Inline count: v1 honours only $inlinecount=allpages, v2 only $count=true; the other spelling is ignored.
  * $expand is refused (400/201): the simulated sets have no navigation properties; $batch/$metadata are absent.

Control endpoints (no auth, JSON, not counted, no latency/errors) for a simulator in another process:
  GET /_sim/stats, POST /_sim/reset_stats, POST /_sim/knobs {latency, error_rate, session_timeout,
  session_idle_seconds, expiry_response, login_concurrency_limit, login_latency, default_page_size},
  POST /_sim/invoices {add_invoice kwargs}, POST /_sim/invoices/<DocEntry> {update_invoice kwargs},
  POST /_sim/invoices/<DocEntry>/cancel|close|reopen, POST /_sim/seed {seed_invoices kwargs},
  POST /_sim/seed_demo, POST /_sim/expire_sessions, POST /_sim/clock {offset_seconds | advance_seconds},
  POST /_sim/lose_next {method, path_contains, count}, POST /_sim/fail_next {method, path_contains, status,
  code, message, count}, GET /_sim/entities/<EntitySet> (rows rendered as v1 JSON).

Errors (HTTP status, code): session 401/301 (configurable), login -304/-306, parallel logins 500/299, query
400/201, unknown body property 400/-1000, missing key 404/-2028, bad foreign key 400/-2028 or -5002, business
rules 400/-10, DELETE on documents 400/-5006, non-updatable field 400/-1029.
"""

from __future__ import annotations

import json
import operator
import random
import re
import socket
import threading
import time
import uuid
from collections import Counter
from datetime import date, datetime, timedelta
from datetime import time as dt_time
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from urllib.parse import quote, unquote, unquote_plus

from werkzeug.wrappers import Request, Response

from . import catalog

LOCAL_CURRENCY = "USD"
# Fixed rates so FC documents are deterministic (units of local currency per unit of foreign currency).
EXCHANGE_RATES = {"USD": Decimal("1"), "EUR": Decimal("1.085")}
SL_VERSION = "1000340"
DEFAULT_PAGE_SIZE = 20

SESSION_MESSAGE = "Invalid session or session already timeout."
LOGIN_FAILED_MESSAGE = "Fail to NONE-SSO login from SLD."
NOT_FOUND_MESSAGE = "No matching records found (ODBC -2028)"
NOT_SUPPORTED_MESSAGE = "The requested action is not supported for this object."
INVALID_FILTER_MESSAGE = "Query string error - Invalid filter condition"
NOT_UPDATABLE_MESSAGE = "Field cannot be updated (ODBC -1029)"

ZERO = Decimal("0")
CENT = Decimal("0.01")
ONE = Decimal("1")
PRICE_QUANT = Decimal("0.000001")

APACHE_503 = (
    '<!DOCTYPE HTML PUBLIC "-//IETF//DTD HTML 2.0//EN">\n<html><head>\n<title>503 Service Unavailable</title>\n'
    "</head><body>\n<h1>Service Unavailable</h1>\n<p>The server is temporarily unable to service your\n"
    "request due to maintenance downtime or capacity\nproblems. Please try again later.</p>\n</body></html>\n"
)
APACHE_404 = (
    '<!DOCTYPE HTML PUBLIC "-//IETF//DTD HTML 2.0//EN">\n<html><head>\n<title>404 Not Found</title>\n'
    "</head><body>\n<h1>Not Found</h1>\n<p>The requested URL was not found on this server.</p>\n</body></html>\n"
)


class SapError(Exception):
    """An error the Service Layer answers with: HTTP status, SAP code (int, or str for odd injected ones), text."""

    def __init__(self, status: int, code: int | str, message: str):
        super().__init__(f"HTTP {status}, code {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


def _q2(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


# ---------------------------------------------------------------------------------------------------------------
# Schema: property kinds, enums, entity types and sets
# ---------------------------------------------------------------------------------------------------------------

STR, INT, NUM, DATE, TIME = "str", "int", "num", "date", "time"


class _Enum:
    """An SAP enum property: values are stored by name; filters also accept the one-letter DB code."""

    def __init__(self, values: dict[str, str]):
        self.names = tuple(values)
        self._lookup = {**{code: name for name, code in values.items()}, **{name: name for name in values}}

    def canonical(self, text) -> str | None:
        return self._lookup.get(str(text))


YES_NO = _Enum({"tYES": "Y", "tNO": "N"})
CARD_TYPE = _Enum({"cCustomer": "C", "cSupplier": "S", "cLid": "L"})
DOC_STATUS = _Enum({"bost_Open": "O", "bost_Close": "C", "bost_Paid": "P", "bost_Delivered": "D"})
CANCEL_STATUS = _Enum({"csYes": "Y", "csNo": "N", "csCancellation": "C"})
DOC_TYPE = _Enum({"dDocument_Items": "I", "dDocument_Service": "S"})
AUTH_STATUS = _Enum({"dasWithout": "W", "dasPending": "P", "dasApproved": "A", "dasRejected": "N",
                     "dasGenerated": "C", "dasGeneratedbyAuthorizer": "D", "dasCancelled": "Y"})
PAY_AUTH_STATUS = _Enum({"pasWithout": "W", "pasPending": "P", "pasApproved": "A", "pasRejected": "N",
                         "pasGenerated": "C", "pasGeneratedbyAuthorizer": "D", "pasCancelled": "Y"})
ACCOUNT_TYPE = _Enum({"at_Revenues": "I", "at_Expenses": "E", "at_Other": "N"})
PAYMENT_TYPE = _Enum({"rCustomer": "C", "rSupplier": "S", "rAccount": "A"})
INVOICE_TYPE = _Enum({"it_PurchaseInvoice": "18", "it_PurchaseCreditNote": "19", "it_PurchaseDownPayment": "204",
                      "it_Invoice": "13", "it_CredItnote": "14", "it_JournalEntry": "30"})
ADDRESS_TYPE = _Enum({"bo_BillTo": "B", "bo_ShipTo": "S"})
VAT_CATEGORY = _Enum({"bovcInputTax": "I", "bovcOutputTax": "O"})
DOC_OBJECT = _Enum({"oPurchaseInvoices": "18"})


class _Type:
    """An OData entity or complex type: ordered scalar properties plus inline collections of a line type."""

    def __init__(self, name: str, fields: dict, collections: dict | None = None):
        self.name = name
        self.fields = fields
        self.collections = collections or {}

    def knows(self, prop: str) -> bool:
        return prop in self.fields or prop in self.collections


BP_ADDRESS = _Type("BPAddress", {
    "AddressName": STR, "AddressType": ADDRESS_TYPE, "Street": STR, "StreetNo": STR, "Block": STR,
    "BuildingFloorRoom": STR, "City": STR, "County": STR, "State": STR, "ZipCode": STR, "Country": STR,
    "FederalTaxID": STR, "TaxCode": STR, "RowNum": INT, "BPCode": STR,
})
BUSINESS_PARTNER = _Type("BusinessPartner", {
    "CardCode": STR, "CardName": STR, "CardType": CARD_TYPE, "CardForeignName": STR, "GroupCode": INT,
    "Currency": STR, "FederalTaxID": STR, "VatGroup": STR, "EmailAddress": STR, "Phone1": STR, "Phone2": STR,
    "Fax": STR, "ContactPerson": STR, "Website": STR, "PayTermsGrpCode": INT, "DebitorAccount": STR,
    "Valid": YES_NO, "ValidFrom": DATE, "ValidTo": DATE, "Frozen": YES_NO, "FrozenFrom": DATE, "FrozenTo": DATE,
    "FrozenRemarks": STR, "CreateDate": DATE, "CreateTime": TIME, "UpdateDate": DATE, "UpdateTime": TIME,
}, {"BPAddresses": BP_ADDRESS})
ACCOUNT = _Type("ChartOfAccount", {
    "Code": STR, "Name": STR, "FormatCode": STR, "ActiveAccount": YES_NO, "AccountType": ACCOUNT_TYPE,
    "AcctCurrency": STR, "FrozenFor": YES_NO, "ValidFor": YES_NO, "CashAccount": YES_NO,
    "LockManualTransaction": YES_NO,
})
DIMENSION = _Type("Dimension", {"DimensionCode": INT, "DimensionName": STR, "IsActive": YES_NO,
                                "DimensionDescription": STR})
PROFIT_CENTER = _Type("ProfitCenter", {
    "CenterCode": STR, "CenterName": STR, "GroupCode": STR, "InWhichDimension": INT, "CostCenterType": STR,
    "EffectiveFrom": DATE, "EffectiveTo": DATE, "Active": YES_NO, "CenterOwner": INT,
})
DISTRIBUTION_RULE_LINE = _Type("DistributionRuleLine", {"CenterCode": STR, "TotalInCenter": NUM,
                                                        "EffectiveFrom": DATE, "EffectiveTo": DATE})
DISTRIBUTION_RULE = _Type("DistributionRule", {
    "FactorCode": STR, "FactorDescription": STR, "TotalFactor": NUM, "Direct": YES_NO, "InWhichDimension": INT,
    "Active": YES_NO, "IsFixedAmount": YES_NO,
}, {"DistributionRuleLines": DISTRIBUTION_RULE_LINE})
VAT_GROUP_LINE = _Type("VatGroups_Line", {"Effectivefrom": DATE, "Rate": NUM})
VAT_GROUP = _Type("VatGroup", {"Code": STR, "Name": STR, "Category": VAT_CATEGORY, "TaxAccount": STR,
                               "Inactive": YES_NO}, {"VatGroups_Lines": VAT_GROUP_LINE})
ADDITIONAL_EXPENSE = _Type("AdditionalExpense", {"ExpensCode": INT, "Name": STR, "ExpenseAccount": STR})

DOCUMENT_LINE = _Type("DocumentLine", {
    "LineNum": INT, "ItemCode": STR, "ItemDescription": STR, "AccountCode": STR, "LineTotal": NUM,
    "RowTotalFC": NUM, "Quantity": NUM, "Price": NUM, "UnitPrice": NUM, "PriceAfterVAT": NUM, "TaxCode": STR,
    "VatGroup": STR, "TaxTotal": NUM, "Currency": STR, "WarehouseCode": STR, "CostingCode": STR,
    "CostingCode2": STR, "CostingCode3": STR, "CostingCode4": STR, "CostingCode5": STR, "ProjectCode": STR,
    "LineStatus": DOC_STATUS, "BaseType": INT, "BaseEntry": INT, "BaseLine": INT, "FreeText": STR,
})
DOCUMENT_EXPENSE = _Type("DocumentAdditionalExpense", {
    "LineNum": INT, "ExpenseCode": INT, "LineTotal": NUM, "LineTotalFC": NUM, "TaxCode": STR, "VatGroup": STR,
    "TaxSum": NUM, "LineGross": NUM, "Remarks": STR,
})
DOCUMENT = _Type("Document", {
    "DocEntry": INT, "DocNum": INT, "DocType": DOC_TYPE, "DocDate": DATE, "DocDueDate": DATE, "TaxDate": DATE,
    "CardCode": STR, "CardName": STR, "NumAtCard": STR, "DocTotal": NUM, "DocTotalFc": NUM, "DocTotalSys": NUM,
    "VatSum": NUM, "VatSumFc": NUM, "VatSumSys": NUM, "DocCurrency": STR, "DocRate": NUM, "PaidToDate": NUM,
    "PaidToDateFC": NUM, "DocumentStatus": DOC_STATUS, "Cancelled": YES_NO, "CancelStatus": CANCEL_STATUS,
    "AuthorizationStatus": AUTH_STATUS, "Comments": STR, "JournalMemo": STR, "CreationDate": DATE,
    "UpdateDate": DATE, "UpdateTime": TIME, "DocTime": TIME, "Series": INT, "DiscountPercent": NUM,
    "TotalDiscount": NUM, "TotalDiscountFC": NUM, "RoundingDiffAmount": NUM, "RoundingDiffAmountFC": NUM,
    "Rounding": YES_NO, "DocObjectCode": DOC_OBJECT, "Confirmed": YES_NO, "Project": STR, "Reference1": STR,
    "Reference2": STR,
}, {"DocumentAdditionalExpenses": DOCUMENT_EXPENSE, "DocumentLines": DOCUMENT_LINE})
PAYMENT_INVOICE = _Type("PaymentInvoice", {
    "LineNum": INT, "DocEntry": INT, "SumApplied": NUM, "AppliedFC": NUM, "AppliedSys": NUM, "DocRate": NUM,
    "InvoiceType": INVOICE_TYPE, "InstallmentId": INT, "DiscountPercent": NUM, "DistributionRule": STR,
    "DistributionRule2": STR, "DistributionRule3": STR, "DistributionRule4": STR, "DistributionRule5": STR,
})
CASH_FLOW = _Type("CashFlowAssignment", {"CashFlowAssignmentsID": INT, "CashFlowLineItemID": INT,
                                         "PaymentMeans": STR, "AmountLC": NUM, "AmountFC": NUM})
PAYMENT = _Type("Payment", {
    "DocEntry": INT, "DocNum": INT, "DocType": PAYMENT_TYPE, "DocDate": DATE, "DueDate": DATE, "TaxDate": DATE,
    "CardCode": STR, "CardName": STR, "DocCurrency": STR, "DocRate": NUM, "LocalCurrency": YES_NO,
    "CashAccount": STR, "CashSum": NUM, "TransferAccount": STR, "TransferDate": DATE, "TransferSum": NUM,
    "TransferReference": STR, "CounterReference": STR, "Remarks": STR, "JournalRemarks": STR, "Reference1": STR,
    "Reference2": STR, "Series": INT, "BankChargeAmount": NUM, "ProjectCode": STR, "Cancelled": YES_NO,
    "CancelStatus": CANCEL_STATUS, "AuthorizationStatus": PAY_AUTH_STATUS, "CreationDate": DATE,
    "UpdateDate": DATE, "UpdateTime": TIME,
}, {"PaymentInvoices": PAYMENT_INVOICE, "CashFlowAssignments": CASH_FLOW})


class _EntitySet:
    def __init__(self, name: str, etype: _Type, key: str, actions=(), writable=False):
        self.name = name
        self.etype = etype
        self.key = key
        self.key_kind = etype.fields[key]
        self.actions = frozenset(actions)
        self.writable = writable


ENTITY_SETS = {es.name: es for es in (
    _EntitySet("BusinessPartners", BUSINESS_PARTNER, "CardCode", writable=True),
    _EntitySet("ChartOfAccounts", ACCOUNT, "Code"),
    _EntitySet("Dimensions", DIMENSION, "DimensionCode"),
    _EntitySet("ProfitCenters", PROFIT_CENTER, "CenterCode"),
    _EntitySet("DistributionRules", DISTRIBUTION_RULE, "FactorCode"),
    _EntitySet("VatGroups", VAT_GROUP, "Code"),
    _EntitySet("AdditionalExpenses", ADDITIONAL_EXPENSE, "ExpensCode"),
    _EntitySet("PurchaseInvoices", DOCUMENT, "DocEntry", actions=("Cancel", "Close", "Reopen"), writable=True),
    _EntitySet("VendorPayments", PAYMENT, "DocEntry", actions=("Cancel", "CancelbyCurrentSystemDate"),
               writable=True),
)}

# Header/line properties a client may send when creating or editing; other known properties are computed by
# SAP and silently ignored on input (as the DI core recalculates them), unknown ones are rejected with -1000.
DOCUMENT_INPUTS = {"CardCode", "CardName", "DocType", "DocDate", "DocDueDate", "TaxDate", "NumAtCard", "Comments",
                   "JournalMemo", "DocCurrency", "DocRate", "DiscountPercent", "Rounding", "Series", "Project",
                   "Reference2", "DocumentLines", "DocumentAdditionalExpenses"}
DOCUMENT_AMOUNT_INPUTS = {"DocCurrency", "DocRate", "DiscountPercent", "Rounding", "DocumentLines",
                          "DocumentAdditionalExpenses"}
LINE_INPUTS = {"LineNum", "ItemDescription", "AccountCode", "LineTotal", "RowTotalFC", "Quantity", "Price",
               "UnitPrice", "TaxCode", "VatGroup", "CostingCode", "CostingCode2", "CostingCode3", "CostingCode4",
               "CostingCode5", "ProjectCode", "FreeText"}
PAYMENT_TEXT_FIELDS = {"Remarks", "JournalRemarks", "CounterReference", "TransferReference", "Reference2"}
COSTING_FIELDS = ("CostingCode", "CostingCode2", "CostingCode3", "CostingCode4", "CostingCode5")


# ---------------------------------------------------------------------------------------------------------------
# Value parsing and rendering
# ---------------------------------------------------------------------------------------------------------------

def _parse_date_text(text: str) -> date | None:
    """'YYYY-MM-DD' (any time part ignored, as SAP does for date properties) or 'YYYYMMDD'."""
    text = text.strip()
    try:
        if len(text) >= 10 and text[4] == "-":
            return date.fromisoformat(text[:10])
        if len(text) == 8 and text.isdigit():
            return date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        return None
    return None


def _parse_time_text(text: str) -> dt_time | None:
    """'HH:MM:SS', 'HH:MM', 'HHMMSS' or 'HHMM' (the forms the SAP guide shows for time properties)."""
    text = text.strip()
    try:
        if ":" in text:
            parts = [int(float(p)) for p in text.split(":")]
            if len(parts) in (2, 3):
                return dt_time(*parts)
        elif text.isdigit() and len(text) in (4, 6):
            return dt_time(int(text[:2]), int(text[2:4]), int(text[4:] or 0))
    except ValueError:
        return None
    return None


def _as_date(value) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        return _parse_date_text(value)
    return None


def _as_decimal(value) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        return value
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None


def _date_v1(value: date) -> str:
    return value.isoformat()


def _date_v2(value: date) -> str:
    # Edm.DateTimeOffset; exact SAP rendering UNCONFIRMED, midnight UTC is what public v2 clients expect.
    return value.isoformat() + "T00:00:00Z"


def _time_out(value: dt_time) -> str:
    return value.strftime("%H:%M:%S")


def _out_converter(kind, version: int):
    if kind == NUM:
        return float
    if kind == DATE:
        return _date_v1 if version == 1 else _date_v2
    if kind == TIME:
        return _time_out
    return None


def _make_renderer(etype: _Type, version: int):
    scalars = [(name, _out_converter(kind, version)) for name, kind in etype.fields.items()]
    collections = [(name, _make_renderer(sub, version)) for name, sub in etype.collections.items()]
    return scalars, collections


def _render(row: dict, renderer, select: frozenset | None = None) -> dict:
    scalars, collections = renderer
    out = {}
    for name, conv in scalars:
        if select is None or name in select:
            value = row.get(name)
            out[name] = conv(value) if conv is not None and value is not None else value
    for name, sub in collections:
        if select is None or name in select:
            out[name] = [_render(line, sub) for line in row.get(name) or ()]
    return out


RENDERERS = {(name, version): _make_renderer(es.etype, version)
             for name, es in ENTITY_SETS.items() for version in (1, 2)}


def _copy_row(row: dict) -> dict:
    """Copy deep enough that callers can't change stored state (rows hold only scalars and lists of dicts)."""
    return {k: [dict(line) for line in v] if isinstance(v, list) else v for k, v in row.items()}


# ---------------------------------------------------------------------------------------------------------------
# $filter compiler
# ---------------------------------------------------------------------------------------------------------------

_TOKEN_RE = re.compile(r"""\s*(?:
    (?P<str>'(?:[^']|'')*')
  | (?P<typed>(?:datetimeoffset|datetime|date|time)'(?:[^']|'')*')
  | (?P<date>\d{4}-\d{2}-\d{2}(?:T[0-9:.]+(?:Z|[+-]\d{2}:\d{2})?)?)
  | (?P<time>\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)
  | (?P<num>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?[mMdDfFlL]?)
  | (?P<lp>\()
  | (?P<rp>\))
  | (?P<comma>,)
  | (?P<name>[A-Za-z_][A-Za-z0-9_/.]*)
)""", re.VERBOSE)

_COMPARISONS = {"eq": operator.eq, "ne": operator.ne, "gt": operator.gt, "ge": operator.ge,
                "lt": operator.lt, "le": operator.le}
_FLIPPED = {"eq": "eq", "ne": "ne", "gt": "lt", "ge": "le", "lt": "gt", "le": "ge"}
_STRING_FUNCTIONS = {"startswith", "endswith", "contains", "substringof"}


def _invalid_filter() -> SapError:
    return SapError(400, 201, INVALID_FILTER_MESSAGE)


def _invalid_property(name: str) -> SapError:
    return SapError(400, 201, f"Property '{name}' is invalid")


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens, pos, text = [], 0, text.rstrip()
    while pos < len(text):
        match = _TOKEN_RE.match(text, pos)
        if match is None or match.end() == pos:
            raise _invalid_filter()
        tokens.append((match.lastgroup, match.group(match.lastgroup)))
        pos = match.end()
    return tokens


class _FilterCompiler:
    """Recursive-descent parser turning a $filter string into a predicate `row -> bool`.

    Grammar: or := and ('or' and)*; and := unary ('and' unary)*; unary := 'not' unary | primary;
    primary := '(' or ')' | operand op operand | boolean function [eq|ne true|false].
    """

    def __init__(self, text: str, etype: _Type, case_insensitive: bool):
        self.tokens = _tokenize(text)
        self.pos = 0
        self.etype = etype
        self.ci = case_insensitive

    def compile(self):
        if not self.tokens:
            raise _invalid_filter()
        predicate = self._or()
        if self.pos != len(self.tokens):
            raise _invalid_filter()
        return predicate

    # -- token helpers
    def _peek(self):
        return self.tokens[self.pos] if self.pos < len(self.tokens) else (None, None)

    def _take(self):
        token = self._peek()
        if token[0] is None:
            raise _invalid_filter()
        self.pos += 1
        return token

    def _accept_word(self, word: str) -> bool:
        if self._peek() == ("name", word):
            self.pos += 1
            return True
        return False

    def _expect(self, kind: str):
        if self._take()[0] != kind:
            raise _invalid_filter()

    # -- grammar
    def _or(self):
        left = self._and()
        while self._accept_word("or"):
            right = self._and()
            left = (lambda a, b: lambda row: a(row) or b(row))(left, right)
        return left

    def _and(self):
        left = self._unary()
        while self._accept_word("and"):
            right = self._unary()
            left = (lambda a, b: lambda row: a(row) and b(row))(left, right)
        return left

    def _unary(self):
        if self._accept_word("not"):
            inner = self._unary()
            return lambda row: not inner(row)
        return self._primary()

    def _primary(self):
        if self._peek()[0] == "lp":
            self.pos += 1
            inner = self._or()
            self._expect("rp")
            return inner
        left = self._operand()
        kind, text = self._peek()
        if kind == "name" and text in _COMPARISONS:
            self.pos += 1
            return self._comparison(left, text, self._operand())
        if left[0] == "func":
            return left[1]
        raise _invalid_filter()

    def _operand(self):
        kind, text = self._take()
        if kind == "name":
            if text in _STRING_FUNCTIONS and self._peek()[0] == "lp":
                return ("func", self._function(text))
            if text in ("true", "false"):
                return ("lit", "bool", text == "true")
            if text == "null":
                return ("lit", "null", None)
            if text in _COMPARISONS or text in ("and", "or", "not"):
                raise _invalid_filter()
            self._property_kind(text)
            return ("prop", text)
        if kind == "str":
            return ("lit", "str", text[1:-1].replace("''", "'"))
        if kind == "typed":
            return ("lit", "str", text[text.index("'") + 1:-1].replace("''", "'"))
        if kind in ("date", "time", "num"):
            return ("lit", kind, text)
        raise _invalid_filter()

    def _property_kind(self, name: str):
        kind = self.etype.fields.get(name)
        if kind is None:
            raise _invalid_property(name)
        return kind

    # -- building predicates
    def _function(self, name: str):
        self._expect("lp")
        first = self._operand()
        self._expect("comma")
        second = self._operand()
        self._expect("rp")
        # substringof(needle, Property) is the V3 order; accept either order for all four functions.
        prop, lit = (first, second) if first[0] == "prop" else (second, first)
        if prop[0] != "prop" or lit[0] != "lit" or lit[1] not in ("str", "num"):
            raise _invalid_filter()
        if self._property_kind(prop[1]) != STR:
            raise _invalid_filter()
        needle = lit[2].lower() if self.ci else lit[2]
        method = {"startswith": str.startswith, "endswith": str.endswith,
                  "contains": str.__contains__, "substringof": str.__contains__}[name]
        prop_name, ci = prop[1], self.ci

        def predicate(row):
            value = row.get(prop_name)
            if value is None:
                return False
            return method(value.lower() if ci else value, needle)

        return predicate

    def _comparison(self, left, op: str, right):
        if left[0] == "func" or right[0] == "func":
            return self._function_comparison(left, op, right)
        if left[0] == "lit" and right[0] == "prop":
            left, right, op = right, left, _FLIPPED[op]
        if left[0] != "prop" or right[0] != "lit":
            raise _invalid_filter()
        prop = left[1]
        kind = self._property_kind(prop)
        if right[1] == "null":
            if op not in ("eq", "ne"):
                raise _invalid_filter()
            return (lambda row: row.get(prop) is None) if op == "eq" else (lambda row: row.get(prop) is not None)
        return self._value_comparison(prop, kind, _COMPARISONS[op], self._coerce(kind, right))

    def _function_comparison(self, left, op, right):
        func, lit = (left, right) if left[0] == "func" else (right, left)
        if func[0] != "func" or lit[0] != "lit" or lit[1] != "bool" or op not in ("eq", "ne"):
            raise _invalid_filter()
        predicate = func[1]
        if (op == "eq") == lit[2]:
            return predicate
        return lambda row: not predicate(row)

    def _coerce(self, kind, literal):
        tag, text = literal[1], literal[2]
        if tag == "bool":
            raise _invalid_filter()
        if kind == STR:
            return text.lower() if self.ci else text
        if kind in (INT, NUM):
            value = _as_decimal(text.rstrip("mMdDfFlL"))
        elif kind == DATE:
            value = _parse_date_text(text)
        elif kind == TIME:
            parsed = _parse_time_text(text)
            value = (parsed.hour, parsed.minute) if parsed else None
        else:
            value = kind.canonical(text)
        if value is None:
            raise _invalid_filter()
        return value

    def _value_comparison(self, prop, kind, compare, value):
        if kind == TIME:
            # Only hour and minute count for time properties (SAP guide); both sides truncated to the minute.
            def predicate(row):
                v = row.get(prop)
                return v is not None and compare((v.hour, v.minute), value)
        elif kind == STR and self.ci:
            def predicate(row):
                v = row.get(prop)
                return v is not None and compare(v.lower(), value)
        else:
            def predicate(row):
                v = row.get(prop)
                return v is not None and compare(v, value)
        return predicate


def _parse_orderby(text: str, etype: _Type) -> list[tuple[str, bool]]:
    keys = []
    for part in text.split(","):
        bits = part.split()
        if not bits or len(bits) > 2 or (len(bits) == 2 and bits[1].lower() not in ("asc", "desc")):
            raise SapError(400, 201, "Query string error - Invalid orderby condition")
        if bits[0] not in etype.fields:
            raise _invalid_property(bits[0])
        keys.append((bits[0], len(bits) == 2 and bits[1].lower() == "desc"))
    return keys


def _parse_select(text: str, etype: _Type) -> frozenset | None:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names or "*" in names:
        return None
    for name in names:
        if not etype.knows(name):
            raise _invalid_property(name)
    return frozenset(names)


# ---------------------------------------------------------------------------------------------------------------
# HTTP helpers
# ---------------------------------------------------------------------------------------------------------------

_RESOURCE_RE = re.compile(r"^(?P<set>[A-Za-z_][A-Za-z0-9_]*)(?:\((?P<key>'(?:[^']|'')*'|[^()]*)\))?"
                          r"(?:/(?P<sub>[^/]+))?$")
_VERSION_RE = re.compile(r"^/b1s/v([12])(?:/(.*))?$")

META = {1: "odata.metadata", 2: "@odata.context"}
NEXT_LINK = {1: "odata.nextLink", 2: "@odata.nextLink"}
COUNT = {1: "odata.count", 2: "@odata.count"}
ELEMENT = {1: "/@Element", 2: "/$entity"}
JSON_TYPE = {1: "application/json;odata=minimalmetadata;charset=utf-8",
             2: "application/json;odata.metadata=minimal;charset=utf-8"}
VERSION_HEADER = {1: ("DataServiceVersion", "3.0"), 2: ("OData-Version", "4.0")}


def _cookie(header: str, name: str) -> str | None:
    for part in re.split(r"[;,]", header or ""):
        key, sep, value = part.strip().partition("=")
        if sep and key == name:
            return value.strip().strip('"')
    return None


def _parse_query(query_string: str) -> list[tuple[str, str]]:
    """Decode the query string keeping order (nextLinks repeat the client's options in its order)."""
    options = []
    for part in query_string.split("&"):
        if part:
            key, _, value = part.partition("=")
            options.append((unquote(key), unquote_plus(value)))
    return options


def _error_body(version: int, code, message: str) -> dict:
    if version == 2:
        return {"error": {"code": str(code), "message": message, "details": [{"code": "", "message": ""}]}}
    try:
        code = int(code)
    except (TypeError, ValueError):
        pass
    return {"error": {"code": code, "message": {"lang": "en-us", "value": message}}}


def _json_response(version: int, status: int, body, headers=()) -> Response:
    data = json.dumps(body, ensure_ascii=False).encode("utf-8")
    return Response(data, status=status, headers=[VERSION_HEADER[version], *headers],
                    content_type=JSON_TYPE[version])


def _error_response(version: int, error: SapError) -> Response:
    return _json_response(version, error.status, _error_body(version, error.code, error.message))


def _html_response(status: int, html: str) -> Response:
    return Response(html, status=status, content_type="text/html; charset=iso-8859-1")


def _key_literal(es: _EntitySet, key) -> str:
    return str(key) if es.key_kind == INT else "'" + str(key).replace("'", "''") + "'"


class _Ctx:
    """One API request: version, roots for metadata/Location, headers and options."""

    def __init__(self, environ: dict, version: int, session_id: str | None = None):
        self.environ = environ
        self.version = version
        self.request = Request(environ)
        self.host_root = f"{environ.get('wsgi.url_scheme', 'http')}://{environ.get('HTTP_HOST', 'localhost')}"
        self.root = f"{self.host_root}/b1s/v{version}"
        self.options = _parse_query(environ.get("QUERY_STRING", ""))
        self.session_id = session_id

    def header(self, name: str, default: str = "") -> str:
        return self.request.headers.get(name, default)

    def option(self, name: str) -> str | None:
        value = None
        for key, val in self.options:
            if key == name:
                value = val
        return value

    def prefer_tokens(self) -> list[str]:
        return [t.strip() for t in self.header("Prefer").split(",") if t.strip()]

    def json_body(self) -> dict:
        raw = self.request.get_data()
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw, parse_float=Decimal)
        except ValueError as exc:
            raise SapError(400, -1000, "Invalid JSON payload") from exc
        if not isinstance(body, dict):
            raise SapError(400, -1000, "Invalid JSON payload")
        return body

    def metadata(self, fragment: str) -> str:
        return f"{self.root}/$metadata#{fragment}"


# ---------------------------------------------------------------------------------------------------------------
# The simulator
# ---------------------------------------------------------------------------------------------------------------

class SapSimulator:
    """SAP B1 Service Layer simulator; call it as a WSGI app, drive it with its knobs and helpers.

    `seed=True` loads catalog.py master data (vendors, accounts, cost centres, tax codes...), no invoices;
    `clock` is a callable returning the server-local naive datetime used for UpdateDate/UpdateTime.
    """

    def __init__(self, *, seed=True, clock=None, company_db=catalog.SAP_COMPANY_DB):
        self._lock = threading.RLock()
        self._rng = random.Random(0)
        self.company_db = company_db  # the one company database this server has
        # Whether cancelling an invoice bumps the original's UpdateDate/UpdateTime (UNCONFIRMED in the fact
        # sheet): off, only the new cancellation document shows up in a delta read.
        self.touch_original_on_cancel = True
        self.clock = clock
        self.clock_offset = timedelta(0)
        # knobs
        self.latency = 0.0
        self.error_rate = 0.0
        self.session_timeout = 30
        self.session_idle_seconds = None
        self.expiry_response = (401, 301)
        self.login_concurrency_limit = 2
        self.login_latency = 0.0
        self.default_page_size = DEFAULT_PAGE_SIZE
        # counters
        self.request_count = 0
        self.login_count = 0
        self.requests_by_path = Counter()
        # state
        self._sessions: dict[str, float] = {}
        self._logins_in_progress = 0
        self._lost_rules: list[dict] = []
        self._fail_rules: list[dict] = []
        self._tables: dict[str, dict] = {name: {} for name in ENTITY_SETS}
        self._versions: Counter = Counter()
        self._next_entry = {"PurchaseInvoices": 1, "VendorPayments": 1}
        self._next_num = {"PurchaseInvoices": 30001, "VendorPayments": 40001}
        self._manually_closed: set[int] = set()
        self._filter_cache: dict = {}
        self._query_cache: dict = {}
        if seed:
            self._seed_master_data()

    # ----------------------------------------------------------------------------------------------- knobs/API
    def now(self) -> datetime:
        current = self.clock() if self.clock else datetime.now()
        return (current.replace(tzinfo=None) + self.clock_offset).replace(microsecond=0)

    def lose_next_response(self, method, path_contains, count=1):
        """Execute the next `count` matching requests but drop the connection instead of answering."""
        with self._lock:
            self._lost_rules.append({"method": (method or "*").upper(), "path": path_contains, "remaining": count})

    def fail_next(self, method, path_contains, status, code, message, count=1):
        """Answer the next `count` matching requests with this error, without executing them."""
        with self._lock:
            self._fail_rules.append({"method": (method or "*").upper(), "path": path_contains, "remaining": count,
                                     "error": SapError(status, code, message)})

    def expire_all_sessions(self):
        with self._lock:
            self._sessions.clear()

    def reset_stats(self):
        with self._lock:
            self.request_count = 0
            self.login_count = 0
            self.requests_by_path = Counter()

    def stats(self) -> dict:
        with self._lock:
            return {"request_count": self.request_count, "login_count": self.login_count,
                    "requests_by_path": dict(self.requests_by_path)}

    def entities(self, name) -> list[dict]:
        """Copies of the stored rows of an entity set, in key order (Python values: Decimal, date, time)."""
        with self._lock:
            table = self._tables[name]
            return [_copy_row(table[key]) for key in sorted(table)]

    # ------------------------------------------------------------------------------------------------ WSGI
    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == "/_sim" or path.startswith("/_sim/"):
            return self._sim_control(environ)(environ, start_response)
        method = environ.get("REQUEST_METHOD", "GET").upper()
        override = environ.get("HTTP_X_HTTP_METHOD_OVERRIDE")
        if method == "POST" and override:
            method = override.upper()
        with self._lock:
            self.request_count += 1
            self.requests_by_path[self._stats_key(method, path)] += 1
        if self.latency:
            time.sleep(self.latency)
        response = self._answer(environ, method, path)
        if self._take_rule(self._lost_rules, method, path):
            self._drop_connection(environ)
            # werkzeug treats ConnectionError from the app as a dropped client and sends nothing.
            raise ConnectionAbortedError("simulated lost response")
        return response(environ, start_response)

    @staticmethod
    def _stats_key(method: str, path: str) -> str:
        match = _VERSION_RE.match(path)
        if not match:
            return f"{method} ping" if path.startswith("/ping") else f"{method} {path}"
        resource = (match.group(2) or "").rstrip("/")
        parts = _RESOURCE_RE.match(resource)
        if not parts:
            return f"{method} {resource}"
        key = "(*)" if parts.group("key") is not None else ""
        sub = f"/{parts.group('sub')}" if parts.group("sub") else ""
        return f"{method} {parts.group('set')}{key}{sub}"

    def _take_rule(self, rules: list, method: str, path: str):
        if not rules:
            return None
        with self._lock:
            for rule in rules:
                if rule["method"] in ("*", method) and rule["path"] in path:
                    rule["remaining"] -= 1
                    if rule["remaining"] <= 0:
                        rules.remove(rule)
                    return rule
        return None

    @staticmethod
    def _drop_connection(environ):
        sock = environ.get("werkzeug.socket")
        if sock is None:
            return
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _roll_error(self) -> bool:
        if not self.error_rate:
            return False
        with self._lock:
            return self._rng.random() < self.error_rate

    def _answer(self, environ, method: str, path: str) -> Response:
        if self._roll_error():
            return _html_response(503, APACHE_503)
        match = _VERSION_RE.match(path)
        version = int(match.group(1)) if match else 1
        rule = self._take_rule(self._fail_rules, method, path)
        if rule:
            return _error_response(version, rule["error"])
        if not match:
            return self._answer_ping(path)
        resource = (match.group(2) or "").rstrip("/")
        try:
            if resource == "Login":
                return self._login(_Ctx(environ, version), method)
            with self._lock:
                session_id = self._check_session(environ)
                return self._dispatch(_Ctx(environ, version, session_id), method, resource)
        except SapError as error:
            return _error_response(version, error)

    @staticmethod
    def _answer_ping(path: str) -> Response:
        if path in ("/ping", "/ping/"):
            body = {"message": "pong", "sender": "load balancer", "timestamp": time.time()}
            return Response(json.dumps(body), content_type="application/json")
        node = re.match(r"^/ping/node/(\d+)/?$", path)
        if node and node.group(1) == "1":
            body = {"message": "pong", "sender": "node 1", "timestamp": time.time()}
            return Response(json.dumps(body), content_type="application/json")
        if node:
            return _html_response(503, APACHE_503)
        return _html_response(404, APACHE_404)

    # ------------------------------------------------------------------------------------------- sessions
    def _login(self, ctx: _Ctx, method: str) -> Response:
        if method != "POST":
            raise SapError(400, -5006, NOT_SUPPORTED_MESSAGE)
        with self._lock:
            self.login_count += 1
            self._logins_in_progress += 1
            too_many = self._logins_in_progress > self.login_concurrency_limit
        try:
            if self.login_latency:
                time.sleep(self.login_latency)
            if too_many:
                # Live SL: parallel Login calls fail with HTTP 500 code 299.
                raise SapError(500, 299, "SAML Login Failed")
            session_id = self._open_session(ctx.json_body())
        finally:
            with self._lock:
                self._logins_in_progress -= 1
        body = {META[ctx.version]: ctx.metadata("B1Sessions" + ELEMENT[ctx.version]), "SessionId": session_id,
                "Version": SL_VERSION, "SessionTimeout": self.session_timeout}
        # Exactly the documented headers: B1SESSION without Path and with a trailing ';'.
        cookies = [("Set-Cookie", f"B1SESSION={session_id};HttpOnly;"), ("Set-Cookie", "ROUTEID=.node1; path=/b1s")]
        return _json_response(ctx.version, 200, body, cookies)

    def _open_session(self, body: dict) -> str:
        if body.get("CompanyDB") != self.company_db:
            raise SapError(401, -306, LOGIN_FAILED_MESSAGE)
        if body.get("UserName") != catalog.SAP_USER or body.get("Password") != catalog.SAP_PASSWORD:
            raise SapError(401, -304, LOGIN_FAILED_MESSAGE)
        session_id = str(uuid.uuid4())
        with self._lock:
            self._sessions[session_id] = time.monotonic()
        return session_id

    def _idle_limit(self) -> float:
        if self.session_idle_seconds is not None:
            return float(self.session_idle_seconds)
        return self.session_timeout * 60.0

    def _check_session(self, environ) -> str:
        session_id = _cookie(environ.get("HTTP_COOKIE", ""), "B1SESSION")
        now = time.monotonic()
        last = self._sessions.get(session_id) if session_id else None
        if last is None or now - last > self._idle_limit():
            if session_id:
                self._sessions.pop(session_id, None)
            status, code = self.expiry_response
            raise SapError(status, code, SESSION_MESSAGE)
        # Idle timeout: every request extends the session.
        self._sessions[session_id] = now
        return session_id

    # ------------------------------------------------------------------------------------------- routing
    def _dispatch(self, ctx: _Ctx, method: str, resource: str) -> Response:
        if resource == "Logout":
            if method != "POST":
                raise SapError(400, -5006, NOT_SUPPORTED_MESSAGE)
            self._sessions.pop(ctx.session_id, None)
            return Response(status=204)
        if resource == "":
            return self._service_document(ctx)
        match = _RESOURCE_RE.match(resource)
        es = ENTITY_SETS.get(match.group("set")) if match else None
        if es is None:
            segment = match.group("set") if match else resource.split("/")[0]
            raise SapError(404, -1000, f"Resource not found for the segment '{segment}'.")
        key_text, sub = match.group("key"), match.group("sub")
        if key_text is None:
            return self._dispatch_collection(ctx, method, es, sub)
        key = self._parse_key(es, key_text)
        if sub is None:
            return self._dispatch_entity(ctx, method, es, key, key_text)
        if method == "POST" and sub in es.actions:
            self._require_row(es, key, key_text, for_update=True)
            self._run_action(es, key, sub)
            return Response(status=204)
        raise SapError(404, -1000, f"Resource not found for the segment '{sub}'.")

    def _dispatch_collection(self, ctx, method, es, sub) -> Response:
        if sub == "$count" and method == "GET":
            rows = self._query_rows(ctx, es)
            return Response(str(len(rows)), content_type="text/plain;charset=utf-8")
        if sub is not None:
            raise SapError(404, -1000, f"Resource not found for the segment '{sub}'.")
        if method == "GET":
            return self._get_collection(ctx, es)
        if method == "POST" and es.writable:
            return self._create(ctx, es)
        raise SapError(400, -5006, NOT_SUPPORTED_MESSAGE)

    def _dispatch_entity(self, ctx, method, es, key, key_text) -> Response:
        if method == "GET":
            row = self._require_row(es, key, key_text)
            select = self._select(ctx, es)
            body = {META[ctx.version]: ctx.metadata(es.name + ELEMENT[ctx.version])}
            body.update(_render(row, RENDERERS[es.name, ctx.version], select))
            return _json_response(ctx.version, 200, body)
        if method in ("PATCH", "PUT", "MERGE") and es.writable:
            row = self._require_row(es, key, key_text, for_update=True)
            # PUT replaces collections; PATCH merges them unless B1S-ReplaceCollectionsOnPatch is set.
            replace = method == "PUT" or ctx.header("B1S-ReplaceCollectionsOnPatch").lower() == "true"
            self._update(es, row, ctx.json_body(), replace)
            return Response(status=204)
        raise SapError(400, -5006, NOT_SUPPORTED_MESSAGE)

    def _service_document(self, ctx: _Ctx) -> Response:
        sets = [{"name": name, "url": name} for name in ENTITY_SETS]
        return _json_response(ctx.version, 200, {META[ctx.version]: f"{ctx.root}/$metadata", "value": sets})

    @staticmethod
    def _parse_key(es: _EntitySet, text: str):
        text = text.strip()
        if "=" in text and not text.startswith("'"):
            text = text.split("=", 1)[1].strip()
        if es.key_kind == INT:
            if re.fullmatch(r"-?\d+", text):
                return int(text)
        elif len(text) >= 2 and text[0] == text[-1] == "'":
            return text[1:-1].replace("''", "'")
        raise SapError(400, -1000, f"Invalid key value '{text}' for '{es.name}'")

    def _require_row(self, es, key, key_text=None, for_update=False) -> dict:
        row = self._tables[es.name].get(key)
        if row is None:
            if for_update:
                raise SapError(404, -2028, f"Entity with value({key_text or key}) does not exist")
            raise SapError(404, -2028, NOT_FOUND_MESSAGE)
        return row

    # ------------------------------------------------------------------------------------------- querying
    def _select(self, ctx: _Ctx, es: _EntitySet):
        text = ctx.option("$select")
        return None if text is None else _parse_select(text, es.etype)

    def _compiled_filter(self, es: _EntitySet, text: str, ci: bool):
        cache_key = (es.name, text, ci)
        predicate = self._filter_cache.get(cache_key)
        if predicate is None:
            predicate = _FilterCompiler(text, es.etype, ci).compile()
            if len(self._filter_cache) > 512:
                self._filter_cache.clear()
            self._filter_cache[cache_key] = predicate
        return predicate

    def _query_rows(self, ctx: _Ctx, es: _EntitySet) -> list[dict]:
        """Filtered and ordered rows, cached until the entity set changes (paging re-asks the same query)."""
        if ctx.option("$expand") is not None:
            raise SapError(400, 201, "Cannot expand invalid navigation property")
        filter_text = ctx.option("$filter")
        orderby_text = ctx.option("$orderby")
        ci = ctx.header("B1S-CaseInsensitive").lower() == "true"
        cache_key = (es.name, filter_text, orderby_text, ci)
        cached = self._query_cache.get(cache_key)
        if cached is not None and cached[0] == self._versions[es.name]:
            return cached[1]
        table = self._tables[es.name]
        if filter_text is not None:
            predicate = self._compiled_filter(es, filter_text, ci)
            rows = [row for row in table.values() if predicate(row)]
        else:
            rows = list(table.values())
        self._sort(rows, es, orderby_text)
        if len(self._query_cache) > 256:
            self._query_cache.clear()
        self._query_cache[cache_key] = (self._versions[es.name], rows)
        return rows

    @staticmethod
    def _sort(rows: list[dict], es: _EntitySet, orderby_text: str | None):
        keys = _parse_orderby(orderby_text, es.etype) if orderby_text is not None else [(es.key, False)]
        if len({descending for _, descending in keys}) == 1:
            # Fast path: one C-level sort, fine while no value is NULL (None raises TypeError, then fall back).
            try:
                rows[:] = sorted(rows, key=operator.itemgetter(*[p for p, _ in keys]), reverse=keys[0][1])
                return
            except (TypeError, KeyError):
                pass
        # Stable multi-pass sort from the last key to the first; NULLs sort first ascending (SQL Server).
        for prop, descending in reversed(keys):
            rows.sort(key=lambda row, p=prop: (False, 0) if row.get(p) is None else (True, row[p]),
                      reverse=descending)

    def _page_size(self, ctx: _Ctx) -> tuple[int, str | None]:
        for token in ctx.prefer_tokens():
            name, _, value = token.partition("=")
            if name.strip().lower() == "odata.maxpagesize" and value.strip().isdigit():
                size = int(value.strip())
                return size, f"odata.maxpagesize={size}"
        header = ctx.header("B1S-PageSize").strip()
        if header.isdigit():
            return int(header), None
        return self.default_page_size, None

    @staticmethod
    def _int_option(ctx: _Ctx, name: str) -> int | None:
        text = ctx.option(name)
        if text is None:
            return None
        if not text.strip().isdigit():
            raise SapError(400, 201, f"Query string error - Invalid value for {name}")
        return int(text)

    def _get_collection(self, ctx: _Ctx, es: _EntitySet) -> Response:
        select = self._select(ctx, es)
        rows = self._query_rows(ctx, es)
        skip = self._int_option(ctx, "$skip") or 0
        top = self._int_option(ctx, "$top")
        window = rows[skip:] if top is None else rows[skip:skip + top]
        page_size, applied = self._page_size(ctx)
        page = window[:page_size] if page_size else window
        version = ctx.version
        body = {META[version]: ctx.metadata(es.name + (f"({','.join(sorted(select))})" if select and version == 2
                                                       else ""))}
        if self._wants_count(ctx):
            body[COUNT[version]] = len(rows)
        renderer = RENDERERS[es.name, version]
        body["value"] = [_render(row, renderer, select) for row in page]
        next_link = self._next_link(ctx, es, page_size, len(page), skip, top)
        if next_link:
            body[NEXT_LINK[version]] = next_link
        headers = [("Preference-Applied", applied)] if applied else []
        return _json_response(version, 200, body, headers)

    @staticmethod
    def _wants_count(ctx: _Ctx) -> bool:
        if ctx.version == 1:
            return (ctx.option("$inlinecount") or "").lower() == "allpages"
        return (ctx.option("$count") or "").lower() == "true"

    @staticmethod
    def _next_link(ctx: _Ctx, es: _EntitySet, page_size: int, returned: int, skip: int, top: int | None):
        # SAP only checks whether the page is full, so a full last page still gets a nextLink.
        if not page_size or returned < page_size:
            return None
        remaining_top = None if top is None else top - returned
        if remaining_top is not None and remaining_top <= 0:
            return None
        options = [(k, v) for k, v in ctx.options if k not in ("$skip", "$top")]
        if remaining_top is not None:
            options.append(("$top", str(remaining_top)))
        options.append(("$skip", str(skip + returned)))
        query = "&".join(f"{k}={quote(v, safe=chr(39) + '(),:$*/@!;=')}" for k, v in options)
        # Relative to the service root, as observed live on v1 and v2.
        return f"{es.name}?{query}"

    # ------------------------------------------------------------------------------------------- writes (HTTP)
    def _create(self, ctx: _Ctx, es: _EntitySet) -> Response:
        body = ctx.json_body()
        if es.name == "PurchaseInvoices":
            row = self._insert_invoice(self._build_invoice(body))
        elif es.name == "VendorPayments":
            row = self._post_payment(body)
        else:
            row = self._create_business_partner(body)
        location = f"{ctx.root}/{es.name}({_key_literal(es, row[es.key])})"
        prefer = ctx.prefer_tokens()
        for token in ("return-no-content", "return=minimal"):
            if token in prefer:
                return Response(status=204, headers=[("Location", location), ("Preference-Applied", token)])
        body = {META[ctx.version]: ctx.metadata(es.name + ELEMENT[ctx.version])}
        body.update(_render(row, RENDERERS[es.name, ctx.version]))
        return _json_response(ctx.version, 201, body, [("Location", location)])

    def _update(self, es: _EntitySet, row: dict, body: dict, replace: bool):
        if es.name == "PurchaseInvoices":
            self._patch_invoice(row, body, replace)
        elif es.name == "VendorPayments":
            self._patch_payment(row, body)
        else:
            self._patch_business_partner(row, body, replace)

    def _run_action(self, es: _EntitySet, key, action: str):
        if es.name == "PurchaseInvoices":
            {"Cancel": self.cancel_invoice, "Close": self.close_invoice, "Reopen": self.reopen_invoice}[action](key)
        else:
            self.cancel_payment(key, by_current_date=action == "CancelbyCurrentSystemDate")

    # ------------------------------------------------------------------------------------------- state helpers
    def _changed(self, set_name: str):
        self._versions[set_name] += 1

    def _touch(self, row: dict):
        current = self.now()
        row["UpdateDate"] = current.date()
        row["UpdateTime"] = current.time()

    @staticmethod
    def _check_properties(data: dict, etype: _Type):
        if not isinstance(data, dict):
            raise SapError(400, -1000, f"Invalid value for '{etype.name}'")
        for prop in data:
            if not etype.knows(prop):
                raise SapError(400, -1000, f"Property '{prop}' of '{etype.name}' is invalid")

    @staticmethod
    def _coerce_in(kind, value, prop: str, type_name: str):
        """Convert a JSON/Python input value to the stored Python value of a property."""
        if value is None:
            return None
        if kind == STR:
            text = value if isinstance(value, str) else str(value)
            return text or None  # SAP answers null for empty strings
        if kind == INT:
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
                return int(value)
            converted = None
        elif kind == NUM:
            converted = _as_decimal(value)
        elif kind == DATE:
            converted = _as_date(value)
        elif kind == TIME:
            converted = value if isinstance(value, dt_time) else _parse_time_text(str(value))
        else:
            converted = kind.canonical(value)
        if converted is None:
            raise SapError(400, -1000, f"Value '{value}' is invalid for property '{prop}' of '{type_name}'")
        return converted

    # ------------------------------------------------------------------------------------------- master data
    def _seed_master_data(self):
        current = self.now()
        seeded_on = (current - timedelta(days=30)).date()
        seeded_at = dt_time(9, 0, 0)
        since = date(2020, 1, 1)
        for vendor in catalog.SAP_VENDORS:
            self._add_catalog_bp(vendor, seeded_on, seeded_at)
        accounts = self._tables["ChartOfAccounts"]
        for code, format_code, name, active, account_type in catalog.SAP_ACCOUNTS:
            accounts[code] = {"Code": code, "Name": name, "FormatCode": format_code, "ActiveAccount": active,
                              "AccountType": account_type, "AcctCurrency": "##", "FrozenFor": "tNO",
                              "ValidFor": "tYES", "CashAccount": "tYES" if code == catalog.SAP_PAYMENT_ACCOUNT
                              else "tNO", "LockManualTransaction": "tNO"}
        for code, name, active in catalog.SAP_DIMENSIONS:
            self._tables["Dimensions"][code] = {"DimensionCode": code, "DimensionName": name, "IsActive": active,
                                                "DimensionDescription": name}
        for code, name, dimension, active in catalog.SAP_COST_CENTERS:
            self._tables["ProfitCenters"][code] = {
                "CenterCode": code, "CenterName": name, "GroupCode": None, "InWhichDimension": dimension,
                "CostCenterType": None, "EffectiveFrom": since, "EffectiveTo": None, "Active": active,
                "CenterOwner": None}
            # SAP creates a read-only direct distribution rule with the same code for every cost centre.
            self._add_distribution_rule(code, name, dimension, [(code, Decimal("100"))], True, since)
        for code, name, dimension, shares in catalog.SAP_INDIRECT_RULES:
            self._add_distribution_rule(code, name, dimension, shares, False, since)
        for code, name, rate, account in catalog.SAP_TAX_CODES:
            self._tables["VatGroups"][code] = {"Code": code, "Name": name, "Category": "bovcInputTax",
                                               "TaxAccount": account, "Inactive": "tNO",
                                               "VatGroups_Lines": [{"Effectivefrom": since, "Rate": rate}]}
        for code, name, account in catalog.SAP_ADDITIONAL_EXPENSES:
            self._tables["AdditionalExpenses"][code] = {"ExpensCode": code, "Name": name, "ExpenseAccount": account}

    def _add_catalog_bp(self, vendor: dict, seeded_on: date, seeded_at: dt_time):
        street, city, state, zip_code, country = vendor["address"]
        card_type = vendor.get("CardType", "cSupplier")
        frozen = vendor.get("Frozen", "tNO")
        row = {field: vendor.get(field) or None for field in ("CardCode", "CardName", "FederalTaxID",
                                                             "EmailAddress", "Phone1")}
        row.update({
            "CardType": card_type, "GroupCode": 101 if card_type == "cSupplier" else 100,
            "Currency": vendor.get("Currency", LOCAL_CURRENCY), "PayTermsGrpCode": -1,
            "DebitorAccount": "2100" if card_type == "cSupplier" else None,
            # The client's "Inactive" switch sets Frozen=tYES and Valid=tNO together.
            "Valid": "tNO" if frozen == "tYES" else "tYES", "Frozen": frozen,
            "CreateDate": seeded_on, "CreateTime": seeded_at, "UpdateDate": seeded_on, "UpdateTime": seeded_at,
            "BPAddresses": [{"AddressName": "Bill To", "AddressType": "bo_BillTo", "Street": street, "City": city,
                             "State": state, "ZipCode": zip_code, "Country": country, "RowNum": 0,
                             "BPCode": vendor["CardCode"]}],
        })
        self._tables["BusinessPartners"][row["CardCode"]] = row

    def _add_distribution_rule(self, code, name, dimension, shares, direct: bool, since: date):
        self._tables["DistributionRules"][code] = {
            "FactorCode": code, "FactorDescription": name, "TotalFactor": sum(s for _, s in shares),
            "Direct": "tYES" if direct else "tNO", "InWhichDimension": dimension, "Active": "tYES",
            "IsFixedAmount": "tNO",
            "DistributionRuleLines": [{"CenterCode": center, "TotalInCenter": share, "EffectiveFrom": since,
                                       "EffectiveTo": None} for center, share in shares]}

    def _create_business_partner(self, body: dict) -> dict:
        self._check_properties(body, BUSINESS_PARTNER)
        code = self._coerce_in(STR, body.get("CardCode"), "CardCode", "BusinessPartner")
        if not code:
            raise SapError(400, -10, "Business partner code is missing [OCRD.CardCode]")
        table = self._tables["BusinessPartners"]
        if code in table:
            raise SapError(400, -10, f"1320000140 - Business partner code '{code}' already assigned to a business "
                                     "partner; enter a unique business partner code")
        current = self.now()
        row = dict.fromkeys(BUSINESS_PARTNER.fields)
        # DI defaults: a new BP is a customer unless CardType says otherwise.
        row.update({"CardCode": code, "CardType": "cCustomer", "Currency": LOCAL_CURRENCY, "PayTermsGrpCode": -1,
                    "Valid": "tYES", "Frozen": "tNO", "CreateDate": current.date(), "CreateTime": current.time(),
                    "BPAddresses": []})
        self._apply_bp_changes(row, body, replace=True)
        row["GroupCode"] = row["GroupCode"] or (101 if row["CardType"] == "cSupplier" else 100)
        row["UpdateDate"], row["UpdateTime"] = row["CreateDate"], row["CreateTime"]
        table[code] = row
        self._changed("BusinessPartners")
        return row

    def _patch_business_partner(self, row: dict, body: dict, replace: bool):
        self._check_properties(body, BUSINESS_PARTNER)
        if "CardCode" in body and body["CardCode"] != row["CardCode"]:
            raise SapError(400, -1029, NOT_UPDATABLE_MESSAGE)
        self._apply_bp_changes(row, body, replace)
        self._touch(row)
        self._changed("BusinessPartners")

    def _apply_bp_changes(self, row: dict, body: dict, replace: bool):
        read_only = {"CardCode", "CreateDate", "CreateTime", "UpdateDate", "UpdateTime"}
        for prop, value in body.items():
            if prop in BUSINESS_PARTNER.fields and prop not in read_only:
                row[prop] = self._coerce_in(BUSINESS_PARTNER.fields[prop], value, prop, "BusinessPartner")
        if "BPAddresses" in body:
            self._merge_addresses(row, body["BPAddresses"] or [], replace)

    def _merge_addresses(self, row: dict, addresses: list, replace: bool):
        current = [] if replace else row["BPAddresses"]
        for data in addresses:
            self._check_properties(data, BP_ADDRESS)
            match = next((a for a in current if a["AddressName"] == data.get("AddressName")
                          and a["AddressType"] == data.get("AddressType", a["AddressType"])), None)
            if match is None:
                match = dict.fromkeys(BP_ADDRESS.fields)
                match.update({"AddressType": "bo_BillTo", "RowNum": len(current)})
                current.append(match)
            for prop, value in data.items():
                if prop not in ("RowNum", "BPCode"):
                    match[prop] = self._coerce_in(BP_ADDRESS.fields[prop], value, prop, "BPAddress")
            match["BPCode"] = row["CardCode"]
        row["BPAddresses"] = current

    # ------------------------------------------------------------------------------------------- validation
    def _require_supplier(self, card_code, table: str) -> dict:
        bp = self._tables["BusinessPartners"].get(card_code) if card_code else None
        if bp is None:
            raise SapError(400, -10, f"Invalid BP code '{card_code}' [{table}.CardCode]")
        if bp["CardType"] != "cSupplier":
            raise SapError(400, -10, f"BP '{card_code}' is not a vendor [{table}.CardCode]")
        if bp["Frozen"] == "tYES" or bp["Valid"] == "tNO":
            raise SapError(400, -10, f"10001071 - Business partner {card_code} is inactive")
        return bp

    def _check_account(self, code, where: str):
        account = self._tables["ChartOfAccounts"].get(code) if code else None
        if account is None:
            raise SapError(400, -2028, f"No matching records found 'G/L Accounts' (OACT) {where}")
        if account["ActiveAccount"] != "tYES":
            raise SapError(400, -10, f"Account {code} is a title account and cannot be posted to {where}")
        if account["FrozenFor"] == "tYES":
            raise SapError(400, -10, f"Account {code} is frozen {where}")

    def _tax_rate(self, code) -> Decimal:
        if code is None:
            return ZERO  # no tax code on the line: no tax (simulator choice)
        return self._tables["VatGroups"][code]["VatGroups_Lines"][-1]["Rate"]

    def _check_tax_code(self, code, where: str):
        group = self._tables["VatGroups"].get(code)
        if group is None or group["Inactive"] == "tYES":
            raise SapError(400, -10, f"10000180 - Specify valid tax code {where}")

    def _check_distribution_rule(self, code, dimension: int, where: str):
        rule = self._tables["DistributionRules"].get(code)
        if rule is None:
            raise SapError(400, -2028, f"No matching records found 'Distribution Rules' (OOCR) {where}")
        if rule["InWhichDimension"] != dimension:
            raise SapError(400, -10, f"Distribution rule '{code}' does not belong to dimension {dimension} {where}")
        if rule["Active"] != "tYES":
            raise SapError(400, -10, f"Distribution rule '{code}' is inactive {where}")

    # ------------------------------------------------------------------------------------------- invoices
    def _build_invoice(self, payload: dict) -> dict:
        """Validate an SAP-shaped Document payload and return the (not yet stored) invoice row."""
        self._check_properties(payload, DOCUMENT)
        doc_type = self._coerce_in(DOC_TYPE, payload.get("DocType") or "dDocument_Service", "DocType", "Document")
        if doc_type != "dDocument_Service":
            raise SapError(400, -10, "Item documents are not supported by the simulator; use dDocument_Service")
        bp = self._require_supplier(payload.get("CardCode"), "OPCH")
        currency = payload.get("DocCurrency") or (bp["Currency"] if bp["Currency"] != "##" else LOCAL_CURRENCY)
        rate = self._doc_rate(currency, payload.get("DocRate"))
        current = self.now()
        doc_date = self._coerce_in(DATE, payload.get("DocDate") or current.date(), "DocDate", "Document")
        row = dict.fromkeys(DOCUMENT.fields)
        row.update({
            "DocType": doc_type, "DocDate": doc_date, "DocDueDate": doc_date + timedelta(days=30),
            "TaxDate": doc_date, "CardCode": bp["CardCode"], "CardName": bp["CardName"], "DocCurrency": currency,
            "DocRate": rate, "PaidToDate": ZERO, "PaidToDateFC": ZERO, "DocumentStatus": "bost_Open",
            "Cancelled": "tNO", "CancelStatus": "csNo", "AuthorizationStatus": "dasWithout",
            "CreationDate": current.date(), "UpdateDate": current.date(), "UpdateTime": current.time(),
            # OPCH.DocTime is HHMM: minute precision.
            "DocTime": current.time().replace(second=0), "Series": 12, "DiscountPercent": ZERO, "Rounding": "tNO",
            "DocObjectCode": "oPurchaseInvoices", "Confirmed": "tYES",
            "DocumentLines": [], "DocumentAdditionalExpenses": [],
        })
        lines = payload.get("DocumentLines")
        if not isinstance(lines, list) or not lines:
            raise SapError(400, -5002, "Cannot add document without rows [PCH1]")
        header = {k: v for k, v in payload.items() if k not in ("CardCode", "DocType", "DocCurrency", "DocRate")}
        self._apply_invoice_changes(row, header, replace=True)
        return row

    def _doc_rate(self, currency: str, given) -> Decimal:
        if currency == LOCAL_CURRENCY:
            return ONE
        if given is not None:
            rate = self._coerce_in(NUM, given, "DocRate", "Document")
            if rate > 0:
                return rate
        if currency not in EXCHANGE_RATES:
            raise SapError(400, -10, f"Update the exchange rate for currency '{currency}'")
        return EXCHANGE_RATES[currency]

    def _apply_invoice_changes(self, row: dict, changes: dict, replace: bool):
        """Apply header/line/expense input to an invoice row, validate, and recompute its totals."""
        for prop, value in changes.items():
            if prop in DOCUMENT_INPUTS and prop in DOCUMENT.fields:
                row[prop] = self._coerce_in(DOCUMENT.fields[prop], value, prop, "Document")
        if row["DocDueDate"] is None or row["TaxDate"] is None:
            row["DocDueDate"] = row["DocDueDate"] or row["DocDate"] + timedelta(days=30)
            row["TaxDate"] = row["TaxDate"] or row["DocDate"]
        row["DiscountPercent"] = row["DiscountPercent"] or ZERO
        row["Rounding"] = row["Rounding"] or "tNO"
        if "DocumentLines" in changes:
            self._merge_lines(row, changes["DocumentLines"] or [], replace)
        if "DocumentAdditionalExpenses" in changes:
            self._merge_expenses(row, changes["DocumentAdditionalExpenses"] or [], replace)
        if not row["DocumentLines"]:
            raise SapError(400, -5002, "Cannot add document without rows [PCH1]")
        self._compute_totals(row)

    def _merge_lines(self, row: dict, lines: list, replace: bool):
        current = [] if replace else row["DocumentLines"]
        fc = row["DocCurrency"] != LOCAL_CURRENCY
        for data in lines:
            self._check_properties(data, DOCUMENT_LINE)
            line = None if replace else next((x for x in current if x["LineNum"] == data.get("LineNum")), None)
            if line is None:
                line = dict.fromkeys(DOCUMENT_LINE.fields)
                line.update({"LineNum": len(current), "Quantity": ONE, "LineStatus": "bost_Open", "LineTotal": ZERO,
                             "RowTotalFC": ZERO})
                current.append(line)
            self._apply_line_input(line, data, fc)
        row["DocumentLines"] = current

    def _apply_line_input(self, line: dict, data: dict, fc: bool):
        where = f"[PCH1.AcctCode][line: {line['LineNum'] + 1}]"
        amount_key = "RowTotalFC" if fc else "LineTotal"
        values = {p: self._coerce_in(DOCUMENT_LINE.fields[p], v, p, "DocumentLine")
                  for p, v in data.items() if p in LINE_INPUTS and p != "LineNum"}
        if values.get("TaxCode") is None and values.get("VatGroup") is not None:
            values["TaxCode"] = values["VatGroup"]  # VatGroup and TaxCode both name the tax code here
        for prop in ("ItemDescription", "AccountCode", "TaxCode", "ProjectCode", "FreeText", *COSTING_FIELDS):
            if prop in values or (prop == "TaxCode" and "VatGroup" in values):
                line[prop] = values.get(prop)
        if values.get("Quantity") is not None:
            line["Quantity"] = values["Quantity"]
        # Amounts given are in the document currency (see module docstring).
        amount = values.get("LineTotal", values.get("RowTotalFC"))
        price = values.get("Price", values.get("UnitPrice"))
        if amount is not None:
            line[amount_key] = _q2(amount)
        elif price is not None:
            line[amount_key] = _q2(price * (line["Quantity"] or ONE))
        self._check_account(line["AccountCode"], where)
        if line["TaxCode"] is not None:
            self._check_tax_code(line["TaxCode"], where.replace("AcctCode", "TaxCode"))
        line["VatGroup"] = line["TaxCode"]
        for dimension, prop in enumerate(COSTING_FIELDS, start=1):
            if line[prop] is not None:
                self._check_distribution_rule(line[prop], dimension, where.replace("AcctCode", f"OcrCode{dimension}"
                                                                                   if dimension > 1 else "OcrCode"))

    def _merge_expenses(self, row: dict, expenses: list, replace: bool):
        current = [] if replace else row["DocumentAdditionalExpenses"]
        fc = row["DocCurrency"] != LOCAL_CURRENCY
        for data in expenses:
            self._check_properties(data, DOCUMENT_EXPENSE)
            expense = None if replace else next((x for x in current if x["LineNum"] == data.get("LineNum")), None)
            if expense is None:
                expense = dict.fromkeys(DOCUMENT_EXPENSE.fields)
                expense.update({"LineNum": len(current), "LineTotal": ZERO, "LineTotalFC": ZERO})
                current.append(expense)
            self._apply_expense_input(expense, data, fc)
        row["DocumentAdditionalExpenses"] = current

    def _apply_expense_input(self, expense: dict, data: dict, fc: bool):
        where = f"[PCH3.ExpnsCode][line: {expense['LineNum'] + 1}]"
        for prop in ("ExpenseCode", "TaxCode", "VatGroup", "Remarks"):
            if prop in data:
                expense[prop] = self._coerce_in(DOCUMENT_EXPENSE.fields[prop], data[prop], prop, "AdditionalExpense")
        if expense["TaxCode"] is None:
            expense["TaxCode"] = expense["VatGroup"]
        amount = data.get("LineTotal", data.get("LineTotalFC"))
        if amount is not None:
            expense["LineTotalFC" if fc else "LineTotal"] = _q2(self._coerce_in(NUM, amount, "LineTotal",
                                                                                "AdditionalExpense"))
        if expense["ExpenseCode"] not in self._tables["AdditionalExpenses"]:
            raise SapError(400, -2028, f"No matching records found 'Freight' (OEXD) {where}")
        if expense["TaxCode"] is not None:
            self._check_tax_code(expense["TaxCode"], where.replace("ExpnsCode", "TaxCode"))
        expense["VatGroup"] = expense["TaxCode"]

    def _compute_totals(self, doc: dict):
        """Recompute line taxes and header totals (algorithm in the module docstring)."""
        fc = doc["DocCurrency"] != LOCAL_CURRENCY
        rate = doc["DocRate"]
        amount_key = "RowTotalFC" if fc else "LineTotal"
        factor = ONE - doc["DiscountPercent"] / 100
        gross = discounted_sum = vat = freight = ZERO
        for line in doc["DocumentLines"]:
            base = line[amount_key]
            tax_rate = self._tax_rate(line["TaxCode"])
            discounted = _q2(base * factor)
            tax = _q2(discounted * tax_rate / 100)
            gross, discounted_sum, vat = gross + base, discounted_sum + discounted, vat + tax
            price = (base / (line["Quantity"] or ONE)).quantize(PRICE_QUANT, rounding=ROUND_HALF_UP)
            line.update({"LineTotal": _q2(base * rate) if fc else base, "RowTotalFC": base if fc else ZERO,
                         "TaxTotal": _q2(tax * rate) if fc else tax, "Price": price, "UnitPrice": price,
                         "PriceAfterVAT": _q2(price * (1 + tax_rate / 100)), "Currency": doc["DocCurrency"],
                         "LineStatus": line["LineStatus"] or "bost_Open"})
        for expense in doc["DocumentAdditionalExpenses"]:
            base = expense["LineTotalFC" if fc else "LineTotal"]
            tax = _q2(base * self._tax_rate(expense["TaxCode"]) / 100)
            freight, vat = freight + base, vat + tax
            expense.update({"LineTotal": _q2(base * rate) if fc else base, "LineTotalFC": base if fc else ZERO,
                            "TaxSum": _q2(tax * rate) if fc else tax})
            expense["LineGross"] = expense["LineTotal"] + expense["TaxSum"]
        before_rounding = discounted_sum + freight + vat
        rounding = ZERO
        if doc["Rounding"] == "tYES":
            rounding = before_rounding.quantize(ONE, rounding=ROUND_HALF_UP) - before_rounding
        totals = {"DocTotal": before_rounding + rounding, "VatSum": vat, "TotalDiscount": gross - discounted_sum,
                  "RoundingDiffAmount": rounding}
        for name, value in totals.items():
            doc[name] = _q2(value * rate) if fc else value
            doc[{"DocTotal": "DocTotalFc", "VatSum": "VatSumFc"}.get(name, name + "FC")] = value if fc else ZERO
        doc["DocTotalSys"], doc["VatSumSys"] = doc["DocTotal"], doc["VatSum"]  # system currency = local (USD)

    def _insert_invoice(self, row: dict) -> dict:
        with self._lock:
            row["DocEntry"] = self._next_entry["PurchaseInvoices"]
            row["DocNum"] = self._next_num["PurchaseInvoices"]
            row["Reference1"] = str(row["DocNum"])
            self._next_entry["PurchaseInvoices"] += 1
            self._next_num["PurchaseInvoices"] += 1
            self._tables["PurchaseInvoices"][row["DocEntry"]] = row
            self._changed("PurchaseInvoices")
            return row

    def _invoice(self, doc_entry) -> dict:
        row = self._tables["PurchaseInvoices"].get(doc_entry)
        if row is None:
            raise SapError(404, -2028, f"Entity with value({doc_entry}) does not exist")
        return row

    def _patch_invoice(self, row: dict, body: dict, replace: bool):
        self._check_properties(body, DOCUMENT)
        for prop in ("CardCode", "DocCurrency", "DocType"):
            if prop in body and body[prop] != row[prop]:
                raise SapError(400, -1029, NOT_UPDATABLE_MESSAGE)
        touches_amounts = any(prop in DOCUMENT_AMOUNT_INPUTS for prop in body)
        locked = row["CancelStatus"] != "csNo" or row["DocumentStatus"] != "bost_Open" or row["PaidToDate"] > 0
        if touches_amounts and locked:
            raise SapError(400, -1029, NOT_UPDATABLE_MESSAGE)
        # Validate on a copy so a rejected PATCH leaves the stored invoice untouched.
        candidate = _copy_row(row)
        self._apply_invoice_changes(candidate, {k: v for k, v in body.items() if k != "DocCurrency"}, replace)
        row.update(candidate)
        self._touch(row)
        self._changed("PurchaseInvoices")

    def _set_document_status(self, row: dict, status: str):
        row["DocumentStatus"] = status
        for line in row["DocumentLines"]:
            line["LineStatus"] = status

    # ------------------------------------------------------------------------------------------- payments
    def _post_payment(self, body: dict) -> dict:
        self._check_properties(body, PAYMENT)
        for nested, etype in (("PaymentInvoices", PAYMENT_INVOICE), ("CashFlowAssignments", CASH_FLOW)):
            for line in body.get(nested) or []:
                self._check_properties(line, etype)
        values = {p: self._coerce_in(PAYMENT.fields[p], v, p, "Payment") for p, v in body.items()
                  if p in PAYMENT.fields}
        # VendorPayments default DocType is UNCONFIRMED; the simulator assumes rSupplier.
        if (values.get("DocType") or "rSupplier") != "rSupplier":
            raise SapError(400, -10, "Only supplier payments (DocType rSupplier) are supported by the simulator")
        bp = self._require_supplier(values.get("CardCode"), "OVPM")
        total = self._payment_means_total(values)
        applications = self._payment_applications(bp["CardCode"], body.get("PaymentInvoices") or [])
        applied = sum((amount for _, amount in applications), ZERO)
        if applied != total:
            raise SapError(400, -10, f"Payment total ({total}) does not match the amount applied to documents "
                                     f"({applied}) [OVPM.DocTotal]")
        row = self._new_payment_row(values, bp)
        row["PaymentInvoices"] = [self._payment_line(i, invoice, amount)
                                  for i, (invoice, amount) in enumerate(applications)]
        row["CashFlowAssignments"] = [{p: self._coerce_in(CASH_FLOW.fields[p], v, p, "CashFlowAssignment")
                                       for p, v in line.items()} for line in body.get("CashFlowAssignments") or []]
        for invoice, amount in applications:
            self._apply_to_invoice(invoice, amount)
        self._tables["VendorPayments"][row["DocEntry"]] = row
        self._changed("VendorPayments")
        return row

    def _payment_means_total(self, values: dict) -> Decimal:
        total = ZERO
        for account_prop, sum_prop, db_field in (("TransferAccount", "TransferSum", "TrsfrAcct"),
                                                 ("CashAccount", "CashSum", "CashAcct")):
            amount = values.get(sum_prop) or ZERO
            if amount < 0:
                raise SapError(400, -10, f"Amount must not be negative [OVPM.{sum_prop}]")
            if amount:
                account = values.get(account_prop)
                if account not in self._tables["ChartOfAccounts"]:
                    raise SapError(400, -5002, f"Code undefined [OVPM.{db_field}]")
                self._check_account(account, f"[OVPM.{db_field}]")
            total += amount
        if total <= 0:
            raise SapError(400, -10, "Total payment amount must be greater than zero [OVPM.DocTotal]")
        return total

    def _payment_applications(self, card_code: str, lines: list) -> list[tuple[dict, Decimal]]:
        """Validate PaymentInvoices and return [(invoice row, amount)] without changing anything yet."""
        result, pending = [], Counter()
        for index, line in enumerate(lines, start=1):
            where = f"[VPM2.DocEntry][line: {index}]"
            invoice_type = self._coerce_in(INVOICE_TYPE, line.get("InvoiceType") or "it_PurchaseInvoice",
                                           "InvoiceType", "PaymentInvoice")
            if invoice_type != "it_PurchaseInvoice":
                raise SapError(400, -10, f"Only it_PurchaseInvoice lines are supported by the simulator {where}")
            doc_entry = self._coerce_in(INT, line.get("DocEntry"), "DocEntry", "PaymentInvoice")
            invoice = self._tables["PurchaseInvoices"].get(doc_entry)
            if invoice is None:
                raise SapError(400, -2028, f"No matching records found 'A/P Invoice' (OPCH) {where}")
            amount = self._coerce_in(NUM, line.get("SumApplied"), "SumApplied", "PaymentInvoice")
            self._check_application(invoice, card_code, amount, pending[doc_entry], where)
            pending[doc_entry] += amount
            result.append((invoice, amount))
        return result

    @staticmethod
    def _check_application(invoice: dict, card_code: str, amount, pending: Decimal, where: str):
        doc = invoice["DocEntry"]
        if invoice["CardCode"] != card_code:
            raise SapError(400, -10, f"A/P invoice {doc} does not belong to business partner {card_code} {where}")
        if invoice["Cancelled"] == "tYES" or invoice["CancelStatus"] != "csNo":
            raise SapError(400, -10, f"A/P invoice {doc} is cancelled and cannot be paid {where}")
        if amount is None or amount <= 0:
            raise SapError(400, -10, f"Amount applied to A/P invoice {doc} must be positive {where}")
        open_amount = invoice["DocTotal"] - invoice["PaidToDate"] - pending
        if invoice["DocumentStatus"] != "bost_Open" or open_amount <= 0:
            raise SapError(400, -10, f"A/P invoice {doc} is closed and cannot be paid {where}")
        if amount > open_amount:
            raise SapError(400, -10, f"Amount applied ({amount}) exceeds the open amount ({open_amount}) of A/P "
                                     f"invoice {doc} {where}")

    def _new_payment_row(self, values: dict, bp: dict) -> dict:
        current = self.now()
        row = dict.fromkeys(PAYMENT.fields)
        row.update({k: v for k, v in values.items() if k not in ("DocEntry", "DocNum")})
        doc_date = row["DocDate"] or current.date()
        currency = row["DocCurrency"] or LOCAL_CURRENCY
        row.update({
            "DocEntry": self._next_entry["VendorPayments"], "DocNum": self._next_num["VendorPayments"],
            "DocType": "rSupplier", "DocDate": doc_date, "DueDate": row["DueDate"] or doc_date,
            "TaxDate": row["TaxDate"] or doc_date, "CardName": bp["CardName"], "DocCurrency": currency,
            "DocRate": self._doc_rate(currency, row["DocRate"]), "LocalCurrency": row["LocalCurrency"] or "tNO",
            "CashSum": row["CashSum"] or ZERO, "TransferSum": row["TransferSum"] or ZERO,
            "TransferDate": row["TransferDate"] or (doc_date if row["TransferSum"] else None),
            "BankChargeAmount": row["BankChargeAmount"] or ZERO, "Series": 15, "Cancelled": "tNO",
            "CancelStatus": "csNo", "AuthorizationStatus": "pasWithout", "CreationDate": current.date(),
            "UpdateDate": current.date(), "UpdateTime": current.time(),
        })
        self._next_entry["VendorPayments"] += 1
        self._next_num["VendorPayments"] += 1
        return row

    @staticmethod
    def _payment_line(index: int, invoice: dict, amount: Decimal) -> dict:
        rate = invoice["DocRate"]
        fc = invoice["DocCurrency"] != LOCAL_CURRENCY
        line = dict.fromkeys(PAYMENT_INVOICE.fields)
        line.update({"LineNum": index, "DocEntry": invoice["DocEntry"], "SumApplied": amount,
                     "AppliedFC": _q2(amount / rate) if fc else ZERO, "AppliedSys": amount, "DocRate": rate,
                     "InvoiceType": "it_PurchaseInvoice", "InstallmentId": 1, "DiscountPercent": ZERO})
        return line

    def _apply_to_invoice(self, invoice: dict, amount: Decimal):
        invoice["PaidToDate"] += amount
        if invoice["DocCurrency"] != LOCAL_CURRENCY:
            invoice["PaidToDateFC"] = _q2(invoice["PaidToDate"] / invoice["DocRate"])
        if invoice["PaidToDate"] >= invoice["DocTotal"]:
            self._set_document_status(invoice, "bost_Close")
        # Whether SAP bumps UpdateDate on payment is UNCONFIRMED; the simulator does.
        self._touch(invoice)
        self._changed("PurchaseInvoices")

    def _patch_payment(self, row: dict, body: dict):
        self._check_properties(body, PAYMENT)
        for prop, value in body.items():
            if prop not in PAYMENT_TEXT_FIELDS:
                raise SapError(400, -1029, NOT_UPDATABLE_MESSAGE)
            row[prop] = self._coerce_in(STR, value, prop, "Payment")
        self._touch(row)
        self._changed("VendorPayments")

    def cancel_payment(self, doc_entry, *, by_current_date=False):
        """Cancel an outgoing payment: Cancelled tYES, invoices' PaidToDate reversed and reopened.

        `by_current_date` (CancelbyCurrentSystemDate) is accepted; the simulator keeps no cancellation date.
        """
        with self._lock:
            row = self._tables["VendorPayments"].get(doc_entry)
            if row is None:
                raise SapError(404, -2028, f"Entity with value({doc_entry}) does not exist")
            if row["Cancelled"] == "tYES":
                raise SapError(400, -10, f"Payment {doc_entry} is already cancelled")
            row["Cancelled"], row["CancelStatus"] = "tYES", "csYes"
            self._touch(row)
            for line in row["PaymentInvoices"]:
                self._reverse_on_invoice(line["DocEntry"], line["SumApplied"])
            self._changed("VendorPayments")
            return _copy_row(row)

    def _reverse_on_invoice(self, doc_entry: int, amount: Decimal):
        invoice = self._tables["PurchaseInvoices"][doc_entry]
        invoice["PaidToDate"] = max(ZERO, invoice["PaidToDate"] - amount)
        if invoice["DocCurrency"] != LOCAL_CURRENCY:
            invoice["PaidToDateFC"] = _q2(invoice["PaidToDate"] / invoice["DocRate"])
        reopen = (invoice["CancelStatus"] == "csNo" and doc_entry not in self._manually_closed
                  and invoice["PaidToDate"] < invoice["DocTotal"])
        if reopen:
            self._set_document_status(invoice, "bost_Open")
        self._touch(invoice)
        self._changed("PurchaseInvoices")

    # ------------------------------------------------------------------------------------------- Python helpers
    def add_invoice(self, card_code, lines, *, num_at_card="", doc_date=None, due_date=None, discount_percent=0,
                    freight=None, rounding=False, currency=None, comments="") -> dict:
        """Create an A/P invoice as if posted in SAP; raises SapError like the API would. Returns a copy."""
        payload = {"CardCode": card_code, "NumAtCard": num_at_card, "DocDate": doc_date, "DocDueDate": due_date,
                   "DiscountPercent": discount_percent, "Rounding": "tYES" if rounding else "tNO",
                   "DocCurrency": currency, "Comments": comments, "DocumentLines": lines,
                   "DocumentAdditionalExpenses": freight or []}
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
                       and bp["Currency"] == LOCAL_CURRENCY]
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

    # ------------------------------------------------------------------------------------------- /_sim control
    def _sim_control(self, environ) -> Response:
        request = Request(environ)
        path = environ.get("PATH_INFO", "").rstrip("/")
        try:
            body = json.loads(request.get_data() or b"{}")
            result = self._sim_route(request.method, path, body if isinstance(body, dict) else {})
        except SapError as error:
            result = (400, {"error": {"code": error.code, "message": error.message, "status": error.status}})
        except (ValueError, TypeError, KeyError) as error:
            result = (400, {"error": {"code": "bad_request", "message": str(error)}})
        status, payload = result
        return Response(json.dumps(payload, default=str), status=status, content_type="application/json")

    def _sim_route(self, method: str, path: str, body: dict):
        routes = {
            ("GET", "/_sim/stats"): lambda: self.stats(),
            ("POST", "/_sim/reset_stats"): lambda: self.reset_stats() or self.stats(),
            ("POST", "/_sim/knobs"): lambda: self._set_knobs(body),
            ("POST", "/_sim/invoices"): lambda: self._render_v1("PurchaseInvoices", self.add_invoice(**body)),
            ("POST", "/_sim/seed"): lambda: self._sim_seed(body),
            ("POST", "/_sim/seed_demo"): lambda: {"doc_entries": self.seed_demo_invoices()},
            ("POST", "/_sim/expire_sessions"): lambda: self.expire_all_sessions() or {"ok": True},
            ("POST", "/_sim/clock"): lambda: self._sim_clock(body),
            ("POST", "/_sim/lose_next"): lambda: self.lose_next_response(**body) or {"ok": True},
            ("POST", "/_sim/fail_next"): lambda: self.fail_next(**body) or {"ok": True},
        }
        handler = routes.get((method, path))
        if handler:
            return 200, handler()
        match = re.fullmatch(r"/_sim/invoices/(\d+)(?:/(cancel|close|reopen))?", path)
        if match and method == "POST":
            return 200, self._sim_invoice_action(int(match.group(1)), match.group(2), body)
        match = re.fullmatch(r"/_sim/entities/(\w+)", path)
        if match and method == "GET" and match.group(1) in ENTITY_SETS:
            name = match.group(1)
            return 200, [self._render_v1(name, row) for row in self.entities(name)]
        return 404, {"error": {"code": "not_found", "message": f"{method} {path}"}}

    @staticmethod
    def _render_v1(name: str, row: dict) -> dict:
        return _render(row, RENDERERS[name, 1])

    _KNOBS = ("latency", "error_rate", "session_timeout", "session_idle_seconds", "expiry_response",
              "login_concurrency_limit", "login_latency", "default_page_size")

    def _set_knobs(self, body: dict) -> dict:
        unknown = set(body) - set(self._KNOBS)
        if unknown:
            raise ValueError(f"unknown knobs: {sorted(unknown)}")
        for name, value in body.items():
            setattr(self, name, tuple(value) if name == "expiry_response" else value)
        return {name: getattr(self, name) for name in self._KNOBS}

    def _sim_seed(self, body: dict) -> dict:
        entries = self.seed_invoices(**body)
        return {"created": len(entries), "first_doc_entry": entries[0] if entries else None,
                "last_doc_entry": entries[-1] if entries else None}

    def _sim_clock(self, body: dict) -> dict:
        if "offset_seconds" in body:
            self.clock_offset = timedelta(seconds=body["offset_seconds"])
        if "advance_seconds" in body:
            self.clock_offset += timedelta(seconds=body["advance_seconds"])
        return {"now": self.now().isoformat(), "offset_seconds": self.clock_offset.total_seconds()}

    def _sim_invoice_action(self, doc_entry: int, action: str | None, body: dict) -> dict:
        if action == "cancel":
            row = self.cancel_invoice(doc_entry)
        elif action == "close":
            row = self.close_invoice(doc_entry)
        elif action == "reopen":
            row = self.reopen_invoice(doc_entry)
        else:
            row = self.update_invoice(doc_entry, **body)
        return self._render_v1("PurchaseInvoices", row)


def make_app(**kw) -> SapSimulator:
    """Build a simulator; `seed`/`clock` go to the constructor, any other keyword sets the knob of that name."""
    init = {k: kw.pop(k) for k in ("seed", "clock") if k in kw}
    simulator = SapSimulator(**init)
    for name, value in kw.items():
        if not hasattr(simulator, name):
            raise TypeError(f"unknown simulator option {name!r}")
        setattr(simulator, name, value)
    return simulator
