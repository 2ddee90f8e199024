"""Differences as CSV (command --csv and the admin export). Cells that a spreadsheet would run as a formula
(=, +, -, @, tab, CR at the start) are prefixed with a quote; amounts stay plain numbers."""

import csv

HEADER = ["kind", "description", "sap_supplier", "sap_id", "bill_id", "sap_amount", "bill_amount", "difference",
          "detail", "what_to_do", "new", "expected_to_clear", "record"]
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe(value):
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def write_csv(fh, differences, link=None):
    writer = csv.writer(fh)
    writer.writerow(HEADER)
    for d in differences:
        gap = d.gap
        writer.writerow([
            safe(d.kind), safe(d.get_kind_display()), safe(d.card_code), safe(d.sap_ref), safe(d.bill_ref),
            "" if d.sap_amount is None else f"{d.sap_amount:.2f}", "" if d.bill_amount is None else f"{d.bill_amount:.2f}",
            "" if gap is None else f"{gap:.2f}", safe(d.detail), safe(d.action), "yes" if d.is_new else "no",
            "yes" if d.expected_to_clear else "no", safe(link(d) if link else ""),
        ])
