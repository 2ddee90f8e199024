"""SAP simulator: reference checks."""

from __future__ import annotations

from decimal import Decimal

from .schema import ZERO, SapError


class ValidationMixin:
    """Foreign-key and code checks shared by documents and payments."""

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
