"""SAP simulator: company settings (CompanyService_GetAdminInfo) and branches (BusinessPlaces).

Facts: api-facts-addendum §7 (branches) and §8 (currency). With `enable_branches`, every purchase invoice carries
`BPL_IDAssignedToInvoice` and every outgoing payment needs `BPLID`: a missing or inactive branch is HTTP 400
-5002 "Specify an active branch [<TABLE>.BPLId]" (the exact OVPM text is unconfirmed; the OQUT/OIGE one is used).
Simulator choices, marked [U] in the addendum: a payment may not apply documents of another branch, and a
`BPLID` key sent to a company without branches is refused (real clients omit it; "an empty BPLID is invalid").
"""

from __future__ import annotations

from .schema import SapError

BRANCH_MESSAGE = "Specify an active branch [{table}.BPLId]"


class CompanyMixin:
    """AdminInfo and branch checks."""

    def configure_company(self, *, local_currency=None, branches=None):
        """Python-side: change the company's local currency B1 code (e.g. "$") and/or turn branches on with
        `branches` = [(BPLID, name)] or [(BPLID, name, disabled)]; the first one is the main branch."""
        with self._lock:
            if local_currency is not None and local_currency != self.local_currency:
                old, self.local_currency = self.local_currency, local_currency
                for bp in self._tables["BusinessPartners"].values():
                    if bp.get("Currency") == old:
                        bp["Currency"] = local_currency
            if branches is not None:
                self.enable_branches = bool(branches)
                table = self._tables["BusinessPlaces"]
                table.clear()
                for n, branch in enumerate(branches):
                    bpl_id, name, disabled = (tuple(branch) + (False,))[:3]
                    table[int(bpl_id)] = {"BPLID": int(bpl_id), "BPLName": name, "Disabled": "tYES" if disabled else "tNO",
                                          "MainBPL": "tYES" if n == 0 else "tNO", "DefaultWarehouseID": "01",
                                          "FederalTaxID": None}
                self._changed("BusinessPlaces")

    def admin_info(self) -> dict:
        return {"CompanyName": self.company_db, "LocalCurrency": self.local_currency,
                "SystemCurrency": self.local_currency, "EnableBranches": "tYES" if self.enable_branches else "tNO",
                "DataOwnershipManageBy": "doManageByBranch" if self.enable_branches else "doManageByDocument"}

    def _branch(self, bpl_id, table: str, given: bool) -> tuple[int | None, str | None]:
        """(BPLID, BPLName) for a document or payment, enforcing the company's branch setting."""
        if not self.enable_branches:
            if given and table == "OVPM":
                raise SapError(400, -5002, "Branches are not enabled in this company [OVPM.BPLId]")
            return None, None
        branch = self._tables["BusinessPlaces"].get(bpl_id) if isinstance(bpl_id, int) else None
        if branch is None or branch["Disabled"] == "tYES":
            raise SapError(400, -5002, BRANCH_MESSAGE.format(table=table))
        return branch["BPLID"], branch["BPLName"]
