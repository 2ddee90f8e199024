"""Two-sided reconciliation of one connection: SAP invoices ↔ BILL bills, BILL payments ↔ SAP outgoing payments,
open totals per vendor. Read (reading.py), compare (compare.py), store (storing.py); service.py ties them."""
