"""SAP simulator: constants, error type, enums, entity types and entity sets."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

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

    def __init__(self, status: int, code: int | str, message: str, *, strings: bool = False):
        super().__init__(f"HTTP {status}, code {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.strings = strings  # v1 too with a string code and a string message (seen in real SL 1000190 logs)


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
DOC_OBJECT = _Enum({"oPurchaseInvoices": "18", "oPurchaseCreditNotes": "19"})


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
    "BilltoDefault": STR, "ShipToDefault": STR,
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
    "Reference2": STR, "BPL_IDAssignedToInvoice": INT, "BPLName": STR, "AttachmentEntry": INT,
}, {"DocumentAdditionalExpenses": DOCUMENT_EXPENSE, "DocumentLines": DOCUMENT_LINE})
PROJECT = _Type("Project", {"Code": STR, "Name": STR, "Active": YES_NO, "ValidFrom": DATE, "ValidTo": DATE})
ATTACHMENT_LINE = _Type("Attachments2_Line", {
    "AbsoluteEntry": INT, "LineNum": INT, "SourcePath": STR, "FileName": STR, "FileExtension": STR,
    "AttachmentDate": DATE, "UserID": STR, "Override": YES_NO, "FreeText": STR,
})
ATTACHMENT = _Type("Attachments2", {"AbsoluteEntry": INT}, {"Attachments2_Lines": ATTACHMENT_LINE})
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
    "UpdateDate": DATE, "UpdateTime": TIME, "BPLID": INT, "BPLName": STR,
}, {"PaymentInvoices": PAYMENT_INVOICE, "CashFlowAssignments": CASH_FLOW})
BUSINESS_PLACE = _Type("BusinessPlace", {
    "BPLID": INT, "BPLName": STR, "Disabled": YES_NO, "MainBPL": YES_NO, "DefaultWarehouseID": STR,
    "FederalTaxID": STR,
})


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
    _EntitySet("BusinessPlaces", BUSINESS_PLACE, "BPLID"),
    _EntitySet("Projects", PROJECT, "Code"),
    _EntitySet("PurchaseCreditNotes", DOCUMENT, "DocEntry", actions=("Cancel",)),
    _EntitySet("Attachments2", ATTACHMENT, "AbsoluteEntry"),
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
