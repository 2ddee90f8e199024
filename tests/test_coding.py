"""How an SAP purchase invoice becomes a BILL bill (connector/sync/coding.py, CONTRACT.md "How a bill is coded").

Pure unit tests: plain SAP documents (as the Service Layer returns them) and a hand-made MappingBook.
The SAP totals below are worked out by SAP's own rules (discount per line, tax per line rounded half-up,
freight not discounted, rounding to a whole unit), the same rules the SAP simulator follows.
"""

from decimal import Decimal

import pytest

from connector.sync.coding import (
    MappingBook,
    bill_total,
    code_invoice,
    description,
    invoice_number,
    marker,
    money,
    sap_date,
)

ACC = {
    "6100": "0ca6100", "6200": "0ca6200", "6300": "0ca6300", "6700": "0ca6700", "1450": "0caTAX", "5100": "0caFRT",
}
DEP = {"ADMIN": "0deADMIN", "SALES": "0deSALES", "OPS": "0deOPS", "EAST": "0deEAST"}


def book(**over):
    data = {
        "accounts": {
            **{code: (bill_id, f"{code} Account {code}", "") for code, bill_id in ACC.items()},
            "6900": (None, "6900 Insurance", ""),
            "6800": (None, "6800 Marketing", "archived"),
            "6600": (None, "6600 Travel", "missing"),
        },
        "departments": {
            **{code: (bill_id, f"{code} Dept {code}", "") for code, bill_id in DEP.items()},
            "IT": (None, "IT Information Technology", ""),
            "OLD": (None, "OLD Old department", "archived"),
        },
        "tax_codes": {"TX8": "1450", "TX5": "1450", "EX": "1450", "NOACC": "", "TXINS": "6900"},
        "expense_types": {"1": ("5100", "Freight"), "2": ("6900", "Shipping insurance"), "3": ("", "Handling")},
        "vendors": {
            "V1": ("009V1", "linked", ""),
            "V2": (None, "review", "Ambiguous match: BILL has 2 vendor(s) named like 'Globex Services'"),
            "V3": (None, "failed", ""),
        },
    }
    data.update(over)
    return MappingBook(**data)


def ln(account, amount, tax="EX", tax_total="0", center="ADMIN", text=None, **extra):
    line = {"AccountCode": account, "LineTotal": float(Decimal(amount)), "TaxCode": tax,
            "TaxTotal": float(Decimal(tax_total)), "ItemDescription": text or f"Services {account}"}
    if center:
        line["CostingCode"] = center
    line.update(extra)
    return line


def doc(lines, total, **header):
    data = {
        "DocEntry": 41, "DocNum": 30041, "CardCode": "V1", "CardName": "Northwind Paper Co.", "NumAtCard": "NW-1",
        "DocDate": "2026-03-02", "TaxDate": "2026-02-27", "DocDueDate": "2026-04-01", "DocCurrency": "USD",
        "DocTotal": float(Decimal(total)), "Comments": "", "DiscountPercent": 0.0,
        "DocumentLines": [{"LineNum": i, **line} for i, line in enumerate(lines)], "DocumentAdditionalExpenses": [],
    }
    data.update(header)
    return data


def amounts(body):
    return [Decimal(str(line["amount"])) for line in body["billLineItems"]]


def coded(document, mapping=None):
    body, problems = code_invoice(document, mapping or book())
    assert problems == [], problems
    return body


# --- lines ---------------------------------------------------------------------------------------------------
def test_every_sap_line_becomes_one_bill_line_with_its_account_and_department():
    lines = [ln("6100", "120.00", center="ADMIN", text="Toner"), ln("6700", "310.50", center="OPS", text="Repair"),
             ln("6200", "89.99", center="SALES", text="Courier"), ln("6300", "10.01", center=None, text="Water")]
    body = coded(doc(lines, "530.50"))
    assert body["billLineItems"] == [
        {"amount": 120.0, "description": "Toner",
         "classifications": {"chartOfAccountId": "0ca6100", "departmentId": "0deADMIN"}},
        {"amount": 310.5, "description": "Repair",
         "classifications": {"chartOfAccountId": "0ca6700", "departmentId": "0deOPS"}},
        {"amount": 89.99, "description": "Courier",
         "classifications": {"chartOfAccountId": "0ca6200", "departmentId": "0deSALES"}},
        {"amount": 10.01, "description": "Water", "classifications": {"chartOfAccountId": "0ca6300"}},
    ]


def test_department_comes_from_the_first_costing_code_that_is_set():
    line = ln("6100", "50.00", center=None, CostingCode2="EAST", CostingCode3="SALES")
    body = coded(doc([line], "50.00"))
    assert body["billLineItems"][0]["classifications"] == {"chartOfAccountId": "0ca6100", "departmentId": "0deEAST"}


def test_line_without_text_is_named_after_its_sap_line_number():
    line = ln("6100", "5.00")
    line["ItemDescription"] = ""
    body = coded(doc([ln("6100", "1.00"), line], "6.00"))
    assert body["billLineItems"][1]["description"] == "SAP line 2"


def test_header_invoice_number_dates_due_date_description_and_vendor():
    document = doc([ln("6100", "245.00")], "245.00", NumAtCard="  NW-10021 ", Comments="Copy paper, 50 cases")
    body = coded(document)
    assert body["vendorId"] == "009V1"
    assert body["invoice"] == {"invoiceNumber": "NW-10021", "invoiceDate": "2026-02-27"}  # TaxDate: the vendor's date
    assert body["dueDate"] == "2026-04-01"
    assert body["description"] == "SAP A/P invoice 30041 – vendor ref NW-10021: Copy paper, 50 cases [SAP DocEntry 41]"


def test_invoice_number_falls_back_to_docnum_and_dates_accept_the_v2_format():
    document = doc([ln("6100", "10.00")], "10.00", NumAtCard="", TaxDate=None,
                   DocDate="2026-03-02T00:00:00Z", DocDueDate="2026-04-01T00:00:00Z")
    body = coded(document)
    assert body["invoice"] == {"invoiceNumber": "30041", "invoiceDate": "2026-03-02"}
    assert body["dueDate"] == "2026-04-01"
    assert body["description"] == "SAP A/P invoice 30041 [SAP DocEntry 41]"
    assert invoice_number({"NumAtCard": None, "DocNum": 7}) == "7"
    assert sap_date("2026-01-15T00:00:00Z") == "2026-01-15" and sap_date(None) is None


def test_description_is_capped_and_always_ends_with_the_marker():
    text = description({"DocEntry": 9, "DocNum": 1, "Comments": "x" * 5000})
    assert len(text) <= 4000 and text.endswith(" [SAP DocEntry 9]") and marker(9) == "[SAP DocEntry 9]"


# --- totals to the cent ------------------------------------------------------------------------------------
TOTAL_CASES = [
    pytest.param(  # tax per tax code: one tax line per code, on the code's tax account
        dict(lines=[ln("6100", "100.00", "TX8", "8.25"), ln("6200", "200.00", "TX8", "16.50"),
                    ln("6300", "50.00", "TX5", "2.50"), ln("6700", "20.00", "EX", "0")], total="397.25"),
        [("100.00", "0ca6100"), ("200.00", "0ca6200"), ("50.00", "0ca6300"), ("20.00", "0ca6700"),
         ("2.50", "0caTAX", "Tax TX5"), ("24.75", "0caTAX", "Tax TX8")],
        id="tax-per-code"),
    pytest.param(  # header discount 10 % reduces every line; tax is on the discounted amount
        dict(lines=[ln("6100", "500.00", "TX8", "37.13"), ln("6100", "150.00", "TX8", "11.14")], total="633.27",
             DiscountPercent=10.0),
        [("450.00", "0ca6100"), ("135.00", "0ca6100"), ("48.27", "0caTAX", "Tax TX8")],
        id="header-discount"),
    pytest.param(  # odd discount: each line is rounded half-up to the cent, as SAP does
        dict(lines=[ln("6100", "33.33", "TX8", "2.67"), ln("6200", "33.33", "TX8", "2.67"),
                    ln("6300", "33.34", "TX8", "2.67")], total="105.01", DiscountPercent=3.0),
        [("32.33", "0ca6100"), ("32.33", "0ca6200"), ("32.34", "0ca6300"), ("8.01", "0caTAX", "Tax TX8")],
        id="odd-discount"),
    pytest.param(  # freight (not discounted) on its expense account, its tax with the lines' tax
        dict(lines=[ln("6700", "800.00", "TX5", "40.00", center="OPS")], total="918.75",
             DocumentAdditionalExpenses=[{"ExpenseCode": 1, "LineTotal": 75.0, "TaxCode": "TX5", "TaxSum": 3.75}]),
        [("800.00", "0ca6700"), ("75.00", "0caFRT", "Freight"), ("43.75", "0caTAX", "Tax TX5")],
        id="freight"),
    pytest.param(  # rounding to a whole amount: the difference goes on the largest line
        dict(lines=[ln("6300", "1234.56", "TX8", "101.85"), ln("6100", "10.00")], total="1346.00",
             RoundingDiffAmount=-0.41),
        [("1234.15", "0ca6300"), ("10.00", "0ca6100"), ("101.85", "0caTAX", "Tax TX8")],
        id="rounding"),
    pytest.param(  # everything at once: discount 5 %, two tax codes, freight with tax, rounding up
        dict(lines=[ln("6100", "999.99", "TX8", "78.37"), ln("6200", "0.99", "TX5", "0.05"),
                    ln("6700", "250.25", "EX", "0")], total="1281.00", DiscountPercent=5.0,
             DocumentAdditionalExpenses=[{"ExpenseCode": 1, "LineTotal": 12.5, "TaxCode": "TX8", "TaxSum": 1.03}],
             RoundingDiffAmount=0.38),
        [("950.37", "0ca6100"), ("0.94", "0ca6200"), ("237.74", "0ca6700"), ("12.50", "0caFRT", "Freight"),
         ("0.05", "0caTAX", "Tax TX5"), ("79.40", "0caTAX", "Tax TX8")],
        id="discount-tax-freight-rounding"),
]


@pytest.mark.parametrize("case,expected", TOTAL_CASES)
def test_bill_total_equals_sap_doctotal_to_the_cent(case, expected):
    case = dict(case)
    document = doc(case.pop("lines"), case.pop("total"), **case)
    body = coded(document)
    got = [(f"{Decimal(str(line['amount'])):.2f}", line["classifications"]["chartOfAccountId"])
           + ((line["description"],) if line["description"].startswith(("Tax", "Freight")) else ())
           for line in body["billLineItems"]]
    assert got == expected
    assert bill_total(body) == money(document["DocTotal"])
    assert sum(amounts(body), Decimal(0)) == Decimal(str(document["DocTotal"])).quantize(Decimal("0.01"))
    for value in amounts(body):  # JSON numbers that are exact cents
        assert value == value.quantize(Decimal("0.01"))


def test_tax_lines_are_not_given_a_department():
    body = coded(doc([ln("6100", "100.00", "TX8", "8.25", center="SALES")], "108.25"))
    assert body["billLineItems"][1] == {"amount": 8.25, "description": "Tax TX8",
                                        "classifications": {"chartOfAccountId": "0caTAX"}}


def test_zero_freight_and_zero_tax_make_no_lines():
    document = doc([ln("6100", "40.00", "EX", "0")], "40.00",
                   DocumentAdditionalExpenses=[{"ExpenseCode": 1, "LineTotal": 0.0, "TaxCode": "EX", "TaxSum": 0.0}])
    assert amounts(coded(document)) == [Decimal("40.00")]


def test_rounding_difference_lands_on_the_largest_line_even_when_it_is_not_the_first():
    document = doc([ln("6100", "10.00"), ln("6200", "99.60"), ln("6300", "20.00")], "130.00", RoundingDiffAmount=0.4)
    assert amounts(coded(document)) == [Decimal("10.00"), Decimal("100.00"), Decimal("20.00")]


@pytest.mark.parametrize("value,cents", [("0.005", "0.01"), ("2.675", "2.68"), (2.675, "2.68"), (None, "0.00"),
                                         ("-1.005", "-1.01"), (1e2, "100.00")])
def test_money_rounds_half_up_to_the_cent(value, cents):
    assert money(value) == Decimal(cents)


# --- held: what exactly is missing ---------------------------------------------------------------------------
HELD_CASES = [
    pytest.param(doc([ln("6900", "980.00")], "980.00"),
                 ["SAP account 6900 Insurance (line 1) has no BILL mapping: map it to a BILL account"],
                 id="unmapped-account"),
    pytest.param(doc([ln("6100", "1.00"), ln("6800", "1750.00")], "1751.00"),
                 ["SAP account 6800 Marketing (line 2) is mapped to a BILL account that is archived: map it again"],
                 id="account-mapped-to-archived"),
    pytest.param(doc([ln("6600", "64.00")], "64.00"),
                 ["SAP account 6600 Travel (line 1) is mapped to a BILL account that is missing: map it again"],
                 id="account-mapped-to-missing"),
    pytest.param(doc([ln("7777", "5.00")], "5.00"),
                 ["SAP account 7777 (line 1) is unknown: refresh reference data, then map it to a BILL account"],
                 id="unknown-account"),
    pytest.param(doc([ln("6100", "2400.00", center="IT")], "2400.00"),
                 ["SAP cost center IT Information Technology has no BILL department mapping: map it"],
                 id="unmapped-cost-center"),
    pytest.param(doc([ln("6100", "3.00", center="OLD")], "3.00"),
                 ["SAP cost center OLD Old department is mapped to a BILL department that is archived: map it again"],
                 id="cost-center-mapped-to-archived"),
    pytest.param(doc([ln("6100", "3.00", center="SPLIT99")], "3.00"),
                 ["SAP cost center SPLIT99 is unknown: refresh reference data, then map it to a BILL department"],
                 id="unknown-cost-center"),
    pytest.param(doc([ln("6100", "1500.00")], "1627.50", DocCurrency="EUR"),
                 ["currency EUR: BILL takes only USD bills for this organization: pay this invoice outside BILL or "
                  "post it in USD"],
                 id="currency"),
    pytest.param(doc([ln("6100", "1.00")], "1.00", CardCode="V9"),
                 ["SAP supplier V9 has no BILL vendor yet: run the vendors step"],
                 id="no-vendor-link"),
    pytest.param(doc([ln("6100", "1.00")], "1.00", CardCode="V2"),
                 ["SAP supplier V2 is not linked to a BILL vendor (review): Ambiguous match: BILL has 2 vendor(s) "
                  "named like 'Globex Services'"],
                 id="vendor-in-review"),
    pytest.param(doc([ln("6100", "1.00")], "1.00", CardCode="V3"),
                 ["SAP supplier V3 is not linked to a BILL vendor (failed): fix it under Vendor links"],
                 id="vendor-failed"),
    pytest.param(doc([ln("6100", "10.00", "NOACC", "1.00")], "11.00"),
                 ["SAP tax code NOACC has no tax account in SAP's reference data: refresh reference data or give the "
                  "tax code a tax account in SAP"],
                 id="tax-code-without-account"),
    pytest.param(doc([ln("6100", "10.00", "TXINS", "1.00")], "11.00"),
                 ["SAP account 6900 Insurance (tax account of tax code TXINS) has no BILL mapping: map it to a BILL "
                  "account"],
                 id="tax-account-unmapped"),
    pytest.param(doc([ln("6100", "10.00")], "13.00",
                     DocumentAdditionalExpenses=[{"ExpenseCode": 3, "LineTotal": 3.0, "TaxCode": "EX", "TaxSum": 0}]),
                 ["SAP freight/additional expense 3 has no expense account in SAP's reference data: refresh reference "
                  "data"],
                 id="freight-without-account"),
    pytest.param(doc([ln("6100", "10.00")], "13.00",
                     DocumentAdditionalExpenses=[{"ExpenseCode": 2, "LineTotal": 3.0, "TaxCode": "EX", "TaxSum": 0}]),
                 ["SAP account 6900 Insurance (expense account of Shipping insurance) has no BILL mapping: map it to a "
                  "BILL account"],
                 id="freight-account-unmapped"),
    pytest.param(doc([ln("6100", "100.00")], "125.00"),
                 ["coded lines add up to 100.00 but SAP's total is 125.00: the difference is not rounding; check the "
                  "invoice in SAP"],
                 id="not-rounding"),
    pytest.param(doc([ln("6100", "1.00"), ln("", "2.00")], "3.00"),
                 ["SAP line 2 has no G/L account (AccountCode): check the invoice in SAP"],
                 id="line-without-account"),
    pytest.param(doc([], "0.00"), ["the invoice has no lines to code"], id="no-lines"),
    pytest.param(doc([ln("6100", "0.00")], "0.00"),
                 ["SAP total is 0.00: BILL takes only bills above zero; settle this invoice in SAP"], id="zero-total"),
    pytest.param(  # several problems at once, each named once, in document order
        doc([ln("6900", "1.00", center="IT"), ln("6100", "2.00", center="IT"), ln("6900", "3.00")], "6.00",
            CardCode="V9", DocCurrency="EUR"),
        ["SAP supplier V9 has no BILL vendor yet: run the vendors step",
         "currency EUR: BILL takes only USD bills for this organization: pay this invoice outside BILL or post it in USD",
         "SAP account 6900 Insurance (line 1) has no BILL mapping: map it to a BILL account",
         "SAP cost center IT Information Technology has no BILL department mapping: map it",
         "SAP account 6900 Insurance (line 3) has no BILL mapping: map it to a BILL account"],
        id="several-problems"),
]


@pytest.mark.parametrize("document,problems", HELD_CASES)
def test_an_invoice_that_cannot_be_coded_is_held_naming_exactly_what_is_missing(document, problems):
    body, got = code_invoice(document, book())
    assert body is None
    assert got == problems


def test_held_invoice_codes_once_the_mapping_exists():
    document = doc([ln("6900", "980.00", center="IT")], "980.00")
    assert code_invoice(document, book())[0] is None
    fixed = book()
    fixed.accounts["6900"] = ("0ca6900", "6900 Insurance", "")
    fixed.departments["IT"] = ("0deIT", "IT Information Technology", "")
    body = coded(document, fixed)
    assert body["billLineItems"][0]["classifications"] == {"chartOfAccountId": "0ca6900", "departmentId": "0deIT"}


def test_other_currencies_pass_when_the_organization_takes_them():
    body = coded(doc([ln("6100", "10.00")], "10.00", DocCurrency="EUR"), book(currencies=frozenset({"USD", "EUR"})))
    assert bill_total(body) == Decimal("10.00")
