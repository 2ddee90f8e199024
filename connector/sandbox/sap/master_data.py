"""SAP simulator: master data and BusinessPartners."""

from __future__ import annotations

from datetime import date, timedelta
from datetime import time as dt_time
from decimal import Decimal

from .. import catalog
from .schema import BP_ADDRESS, BUSINESS_PARTNER, NOT_UPDATABLE_MESSAGE, STR, SapError


class MasterDataMixin:
    """Master data seeded from catalog.py and BusinessPartners writes."""

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
        for code, name, active in catalog.SAP_PROJECTS:
            self._tables["Projects"][code] = {"Code": code, "Name": name, "Active": active, "ValidFrom": None,
                                              "ValidTo": None}
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
            "Currency": vendor.get("Currency", self.local_currency), "PayTermsGrpCode": -1,
            "DebitorAccount": "2100" if card_type == "cSupplier" else None,
            # The client's "Inactive" switch sets Frozen=tYES and Valid=tNO together.
            "Valid": "tNO" if frozen == "tYES" else "tYES", "Frozen": frozen,
            "CreateDate": seeded_on, "CreateTime": seeded_at, "UpdateDate": seeded_on, "UpdateTime": seeded_at,
            "BilltoDefault": "Bill To",
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
            raise SapError(400, -5002, "Code undefined  [OCRD.CardCode]")  # live SL, two spaces included
        table = self._tables["BusinessPartners"]
        if code in table:
            raise SapError(400, -10, f"1320000140 - Business partner code '{code}' already assigned to a business "
                                     "partner; enter a unique business partner code")
        current = self.now()
        row = dict.fromkeys(BUSINESS_PARTNER.fields)
        # DI defaults: a new BP is a customer unless CardType says otherwise.
        row.update({"CardCode": code, "CardType": "cCustomer", "Currency": self.local_currency, "PayTermsGrpCode": -1,
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
