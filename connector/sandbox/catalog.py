"""Seed catalogue shared by the SAP B1 and BILL simulators.

One made-up company ("Demo Distribution Inc.") as it looks on both sides, so that mappings, vendor
matching and coding have something realistic to work on: most accounts and departments match, a few
deliberately do not (missing, archived, renamed) so that held records and suggestions can be shown.
Plain data only; the simulators turn it into their own entities.
"""

from decimal import Decimal

SAP_COMPANY_DB = "SBODEMOUS"
# A second demo company: branches on (BusinessPlaces), local currency code "$" as many real companies have it.
SAP_BRANCH_COMPANY_DB = "SBODEMOBR"
SAP_BRANCHES = [(1, "Headquarters"), (2, "West Coast")]
BILL_BRANCH_ORG_ID = "00801SANDBOXORG0002"  # the branch company pays from its own BILL organization (same user)
# A supplier with no address at all in SAP: BILL needs one to create the vendor, so it is held.
SAP_SUPPLIER_WITHOUT_ADDRESS = ("V1090", "Nowhere Fasteners LLC")
SAP_USER = "manager"
SAP_PASSWORD = "1234"
SAP_PAYMENT_ACCOUNT = "_SYS00000000004"

BILL_ORG_ID = "00801SANDBOXORG0001"
BILL_USER = "ap@demo.example"
BILL_PASSWORD = "demo-password"
BILL_DEV_KEY = "sandbox-dev-key"

# SAP G/L accounts: (Code, FormatCode, Name, ActiveAccount, AccountType)
# ActiveAccount 'tNO' marks a title account (not postable).
SAP_ACCOUNTS = [
    ("_SYS00000000004", "1020", "Bank - Operating", "tYES", "at_Other"),
    ("1400", "1400", "Prepaid Expenses", "tYES", "at_Other"),
    ("1450", "1450", "Input Tax Receivable", "tYES", "at_Other"),
    ("2100", "2100", "Accounts Payable", "tYES", "at_Other"),
    ("5100", "5100", "Freight In", "tYES", "at_Expenses"),
    ("6000", "6000", "Operating Expenses", "tNO", "at_Expenses"),
    ("6100", "6100", "Office Supplies", "tYES", "at_Expenses"),
    ("6200", "6200", "Rent", "tYES", "at_Expenses"),
    ("6300", "6300", "Utilities", "tYES", "at_Expenses"),
    ("6400", "6400", "Software Subscriptions", "tYES", "at_Expenses"),
    ("6500", "6500", "Professional Fees", "tYES", "at_Expenses"),
    ("6600", "6600", "Travel", "tYES", "at_Expenses"),
    ("6700", "6700", "Repairs and Maintenance", "tYES", "at_Expenses"),
    ("6800", "6800", "Marketing", "tYES", "at_Expenses"),
    ("6900", "6900", "Insurance", "tYES", "at_Expenses"),
]

# BILL chart of accounts: (id, number, name, type, archived)
# 6900 Insurance is missing in BILL (-> unmapped), 6800 Marketing is archived,
# 6700 has a different name (suggested by number only).
BILL_ACCOUNTS = [
    ("0ca01SBX00000001020", "1020", "Operating Bank Account", "BANK", False),
    ("0ca01SBX00000001400", "1400", "Prepaid Expenses", "OTHER_CURRENT_ASSET", False),
    ("0ca01SBX00000001450", "1450", "Input Tax Receivable", "OTHER_CURRENT_ASSET", False),
    ("0ca01SBX00000005100", "5100", "Freight In", "EXPENSE", False),
    ("0ca01SBX00000006100", "6100", "Office Supplies", "EXPENSE", False),
    ("0ca01SBX00000006200", "6200", "Rent", "EXPENSE", False),
    ("0ca01SBX00000006300", "6300", "Utilities", "EXPENSE", False),
    ("0ca01SBX00000006400", "6400", "Software Subscriptions", "EXPENSE", False),
    ("0ca01SBX00000006500", "6500", "Professional Fees", "EXPENSE", False),
    ("0ca01SBX00000006600", "6600", "Travel", "EXPENSE", False),
    ("0ca01SBX00000006700", "6700", "Repairs & Upkeep", "EXPENSE", False),
    ("0ca01SBX00000006800", "6800", "Marketing", "EXPENSE", True),
]

# SAP dimensions: (DimensionCode, DimensionName, IsActive)
SAP_DIMENSIONS = [
    (1, "Department", "tYES"),
    (2, "Region", "tYES"),
    (3, "Dimension 3", "tNO"),
    (4, "Dimension 4", "tNO"),
    (5, "Dimension 5", "tNO"),
]

# SAP cost centres (ProfitCenters): (CenterCode, CenterName, InWhichDimension, Active)
SAP_COST_CENTERS = [
    ("ADMIN", "Administration", 1, "tYES"),
    ("SALES", "Sales", 1, "tYES"),
    ("OPS", "Operations", 1, "tYES"),
    ("WH", "Warehouse", 1, "tYES"),
    ("IT", "Information Technology", 1, "tYES"),
    ("EAST", "East Region", 2, "tYES"),
    ("WEST", "West Region", 2, "tYES"),
]

# Indirect distribution rules: (FactorCode, FactorDescription, InWhichDimension, [(CenterCode, share)])
# Every cost centre also has a direct rule with its own code (SAP creates those automatically).
SAP_INDIRECT_RULES = [
    ("SPLIT50", "Admin/Sales 50-50", 1, [("ADMIN", Decimal("50")), ("SALES", Decimal("50"))]),
]

# BILL departments: (id, name, shortName, archived)
# "Information Technology" is absent (-> unmapped), regions are not departments in BILL.
BILL_DEPARTMENTS = [
    ("0de01SBX0000000ADMIN", "Administration", "ADM", False),
    ("0de01SBX0000000SALES", "Sales", "SLS", False),
    ("0de01SBX00000000OPS", "Operations", "OPS", False),
    ("0de01SBX000000000WH", "Warehouse", "WH", False),
    ("0de01SBX00000000EAST", "East Region", "EAST", False),
    ("0de01SBX00000000WEST", "West Region", "WEST", False),
]

# SAP tax codes (VatGroups, input tax): (Code, Name, Rate percent, TaxAccount)
SAP_TAX_CODES = [
    ("TX8", "Sales tax 8.25%", Decimal("8.25"), "1450"),
    ("TX5", "Sales tax 5%", Decimal("5"), "1450"),
    ("EX", "Exempt", Decimal("0"), "1450"),
]

# SAP additional expenses (freight): (ExpensCode, Name, ExpenseAccount)
SAP_ADDITIONAL_EXPENSES = [
    (1, "Freight", "5100"),
    (2, "Shipping insurance", "6900"),
]

# SAP suppliers: dicts with BusinessPartners fields (CardType cSupplier unless stated).
SAP_VENDORS = [
    {"CardCode": "V1000", "CardName": "Northwind Paper Co.", "FederalTaxID": "41-1000001",
     "EmailAddress": "ar@northwindpaper.example", "Phone1": "612-555-0100",
     "address": ("100 Paper Mill Rd", "Minneapolis", "MN", "55401", "US")},
    {"CardCode": "V1001", "CardName": "Contoso Facilities LLC", "FederalTaxID": "52-1000002",
     "EmailAddress": "billing@contoso.example", "Phone1": "410-555-0101",
     "address": ("1 Harbor Way", "Baltimore", "MD", "21202", "US")},
    {"CardCode": "V1002", "CardName": "ACME Office Supply, Inc.", "FederalTaxID": "",
     "EmailAddress": "orders@acme-office.example", "Phone1": "312-555-0102",
     "address": ("250 Wacker Dr", "Chicago", "IL", "60606", "US")},
    {"CardCode": "V1003", "CardName": "Globex Services", "FederalTaxID": "",
     "EmailAddress": "ap@globex.example", "Phone1": "503-555-0103",
     "address": ("77 Pearl St", "Portland", "OR", "97209", "US")},
    {"CardCode": "V1004", "CardName": "Initech Software", "FederalTaxID": "94-1000004",
     "EmailAddress": "invoices@initech.example", "Phone1": "512-555-0104",
     "address": ("4120 Freidrich Ln", "Austin", "TX", "78744", "US")},
    {"CardCode": "V1005", "CardName": "Umbrella Utilities", "FederalTaxID": "36-1000005",
     "EmailAddress": "billing@umbrella-util.example", "Phone1": "217-555-0105",
     "address": ("5 Power Plant Rd", "Springfield", "IL", "62701", "US")},
    {"CardCode": "V1006", "CardName": "Stark Logistics", "FederalTaxID": "13-1000006",
     "EmailAddress": "ar@starklogistics.example", "Phone1": "212-555-0106",
     "address": ("10880 Malibu Point", "New York", "NY", "10001", "US")},
    {"CardCode": "V1007", "CardName": "Wayne Travel Partners", "FederalTaxID": "22-1000007",
     "EmailAddress": "accounts@waynetravel.example", "Phone1": "201-555-0107",
     "address": ("1007 Mountain Dr", "Newark", "NJ", "07102", "US")},
    {"CardCode": "V1008", "CardName": "Hooli Legal Advisors", "FederalTaxID": "77-1000008",
     "EmailAddress": "fees@hoolilegal.example", "Phone1": "650-555-0108",
     "address": ("1 Hooli Way", "Palo Alto", "CA", "94301", "US")},
    {"CardCode": "V1009", "CardName": "Frozen Foods Supply", "FederalTaxID": "31-1000009",
     "EmailAddress": "ar@frozenfoods.example", "Phone1": "614-555-0109",
     "address": ("9 Cold St", "Columbus", "OH", "43004", "US"), "Frozen": "tYES"},
    {"CardCode": "V1010", "CardName": "Euro Parts GmbH", "FederalTaxID": "",
     "EmailAddress": "rechnung@europarts.example", "Phone1": "+49 30 5550110",
     "address": ("Hauptstrasse 10", "Berlin", "BE", "10115", "DE"), "Currency": "EUR"},
    {"CardCode": "C2000", "CardName": "Big Customer Corp", "FederalTaxID": "99-2000000",
     "EmailAddress": "ap@bigcustomer.example", "Phone1": "555-555-0200",
     "address": ("2 Market St", "San Francisco", "CA", "94105", "US"), "CardType": "cCustomer"},
]

# BILL vendors that already exist before the first sync:
# V1001 matches by tax id (different spelling of the name), V1002 by normalized name + email,
# V1003 is ambiguous (two "Globex Services" with other e-mails and no tax id).
BILL_VENDORS = [
    {"id": "00901SBXVEND0000001", "name": "Contoso Facilities", "email": "billing@contoso.example",
     "additionalInfo": {"taxId": "52-1000002", "taxIdType": "EIN"},
     "address": ("1 Harbor Way", "Baltimore", "MD", "21202", "US")},
    {"id": "00901SBXVEND0000002", "name": "Acme Office Supply Inc", "email": "orders@acme-office.example",
     "additionalInfo": {},
     "address": ("250 Wacker Drive", "Chicago", "IL", "60606", "US")},
    {"id": "00901SBXVEND0000003", "name": "Globex Services", "email": "east@globex.example",
     "additionalInfo": {},
     "address": ("1 East Ave", "Boston", "MA", "02108", "US")},
    {"id": "00901SBXVEND0000004", "name": "Globex Services", "email": "west@globex.example",
     "additionalInfo": {},
     "address": ("2 West Blvd", "Seattle", "WA", "98101", "US")},
]

# Which SAP expense accounts and cost centres demo invoices use (cycled deterministically).
INVOICE_LINE_ACCOUNTS = ["6100", "6200", "6300", "6400", "6500", "6600", "6700"]
INVOICE_COST_CENTERS = ["ADMIN", "SALES", "OPS", "WH"]

# BILL locations, accounting classes and jobs (v3 classifications; addendum §4): (id, name, shortName, archived).
# SAP's dimension-2 regions map to locations in the demo; "North" is archived (a mapping to it is flagged).
BILL_LOCATIONS = [
    ("loc01SBX00000000EAST", "East Coast", "EAST", False),
    ("loc01SBX00000000WEST", "West Coast", "WEST", False),
    ("loc01SBX0000000NORTH", "North", "NORTH", True),
]
BILL_CLASSES = [
    ("cls01SBX00000000CAPX", "Capital projects", "CAPEX", False),
    ("cls01SBX00000000OPEX", "Operating", "OPEX", False),
]
BILL_JOBS = [
    ("job01SBX0000000J1001", "Warehouse fit-out", "J1001", False),
    ("job01SBX0000000J1002", "Office move", "J1002", False),
]
# SAP projects (Projects): (Code, Name, Active)
SAP_PROJECTS = [
    ("P-FIT", "Warehouse fit-out", "tYES"),
    ("P-MOVE", "Office move", "tYES"),
    ("P-NEW", "New project (not in BILL)", "tYES"),
]
