"""BILL simulator: vendors."""

from __future__ import annotations

import copy
import re

from .common import (
    COUNTRY_NAMES,
    EMAIL_RE,
    TAX_ID_TYPES,
    VENDOR_ACCOUNT_TYPES,
    _bad,
    _compact,
    _deep_merge,
    _dict_field,
    _field_errors,
    _not_found,
    _str_field,
)


class VendorsMixin:
    """Vendors: create, bulk create, update, validation."""

    # ---------------------------------------------------------------- vendors

    def _vendor_normalize(self, data, path, base=None):
        """Validate a full vendor representation (create, or base deep-merged with a PATCH)."""
        vendor = dict(base or {})
        vendor["name"] = _str_field(data, "name", path, required=True, min_len=1, max_len=100)
        vendor["shortName"] = _str_field(data, "shortName", path, max_len=40)
        vendor["accountNumber"] = _str_field(data, "accountNumber", path, max_len=100)
        account_type = data.get("accountType") or "UNDEFINED"  # [U] default when not sent
        if not isinstance(account_type, str) or account_type not in VENDOR_ACCOUNT_TYPES:
            raise _bad(f"Invalid field,value: {path}accountType, {account_type}.")
        vendor["accountType"] = account_type
        email = _str_field(data, "email", path, max_len=255)
        if email and not EMAIL_RE.match(email):
            raise _bad(f"Invalid field,value: {path}email, {email}.")
        vendor["email"] = email
        vendor["phone"] = _str_field(data, "phone", path, max_len=40)
        vendor["address"] = self._address(_dict_field(data, "address", path), path + "address.")
        vendor["paymentInformation"] = self._payment_info(data, path, vendor["name"])
        vendor["additionalInfo"] = self._additional_info(_dict_field(data, "additionalInfo", path),
                                                         path + "additionalInfo.")
        currency = data.get("billCurrency") or "USD"
        if not isinstance(currency, str) or not re.fullmatch(r"[A-Z]{3}", currency):
            raise _bad(f"Invalid field,value: {path}billCurrency, {currency}.")
        vendor["billCurrency"] = currency
        vendor.setdefault("archived", False)
        vendor.setdefault("networkStatus", "NOT_CONNECTED")
        return vendor

    @staticmethod
    def _address(addr, path):
        out = {}
        for key in ("line1", "line2", "city", "stateOrProvince", "zipOrPostalCode"):
            out[key] = _str_field(addr, key, path, max_len=100)
        country = addr.get("country")
        if country is not None:
            if not isinstance(country, str) or not re.fullmatch(r"[A-Z]{2}", country):
                raise _bad(f"Invalid field,value: {path}country, {country}. Use a 2-letter ISO code.")
            out["country"] = country
            out["countryName"] = COUNTRY_NAMES.get(country, country)
        return _compact(out)

    @staticmethod
    def _additional_info(info, path):
        out = dict(info)  # keep unknown keys (track1099, leadTimeInDays, ...) as sent
        tax_id = _str_field(info, "taxId", path, max_len=40)
        tax_type = info.get("taxIdType")
        if tax_type is not None and (not isinstance(tax_type, str) or tax_type not in TAX_ID_TYPES):
            raise _bad(f"Invalid field,value: {path}taxIdType, {tax_type}.")
        if tax_id and tax_type is None:
            out["taxIdType"] = "UNDEFINED"
        return _compact(out)

    @staticmethod
    def _payment_info(data, path, name):
        info = _dict_field(data, "paymentInformation", path)
        bank = info.get("bankAccount")
        out = {"payeeName": _str_field(info, "payeeName", path + "paymentInformation.", max_len=100) or name,
               "payByType": "CHECK"}
        if isinstance(bank, dict) and bank:
            routing = str(bank.get("routingNumber") or "")
            account = str(bank.get("accountNumber") or "")
            if not re.fullmatch(r"\d{9}", routing) or not re.fullmatch(r"\d{4,17}", account):
                raise _bad(f"Invalid field,value: {path}paymentInformation.bankAccount, routing/account number.")
            # stored masked, as BILL never echoes full bank details
            out["bankAccount"] = _compact({**bank, "accountNumber": "*" * (len(account) - 4) + account[-4:],
                                           "routingNumber": routing, "type": bank.get("type") or "CHECKING"})
            out["payByType"] = "ACH"
        return out

    @staticmethod
    def _vendor_order(v):
        keys = ("id", "archived", "name", "shortName", "accountNumber", "accountType", "email", "phone", "address",
                "paymentInformation", "additionalInfo", "billCurrency", "networkStatus", "createdTime",
                "updatedTime")
        return _compact({k: v.get(k) for k in keys})

    def _require_address(self, data, path):
        """Real BILL's OpenAPI makes `address` required on create (addendum §3); the sub-fields are what BILL needs
        to pay by check. Every missing one is listed, one error entry each."""
        if not self.require_vendor_address:
            return
        address = data.get("address")
        if not isinstance(address, dict) or not address:
            raise _field_errors([f"{path}address: must not be null"])
        missing = [f"{path}address.{key}: must not be blank" for key in ("line1", "city", "zipOrPostalCode", "country")
                   if not (isinstance(address.get(key), str) and address[key].strip())]
        if missing:
            raise _field_errors(missing)

    def _new_vendor(self, ctx, data, path):
        self._require_address(data, path)
        vendor = self._vendor_normalize(data, path)
        vendor.update(id=self._new_id("009"), archived=False, createdTime=ctx.now, updatedTime=ctx.now)
        return self._vendor_order(vendor)

    def _h_vendor_create(self, ctx):
        vendor = self._new_vendor(ctx, ctx.json(), "")
        ctx.org.vendors[vendor["id"]] = vendor
        self._emit(ctx.org, "vendor.created", "vendor", vendor, vendor["id"], ctx.out)
        return 201, vendor

    def _h_vendor_bulk(self, ctx):
        items = ctx.json(expect=list)
        if not 1 <= len(items) <= self.max_vendors_bulk:
            raise _bad(f"Bulk vendor create accepts 1 to {self.max_vendors_bulk} vendors, got {len(items)}.")
        vendors = []
        for i, data in enumerate(items):  # validate everything first: bulk is all-or-nothing
            if not isinstance(data, dict):
                raise _bad(f"Invalid field,value: [{i}]. Each vendor must be an object.", "BDC_1124")
            vendors.append(self._new_vendor(ctx, data, f"[{i}]."))
        for vendor in vendors:
            ctx.org.vendors[vendor["id"]] = vendor
            self._emit(ctx.org, "vendor.created", "vendor", vendor, vendor["id"], ctx.out)
        return 201, {"vendors": vendors}  # [U] status of bulk vendor create; 201 like single create

    def _h_vendor_patch(self, ctx, ident):
        current = ctx.org.vendors.get(ident)
        if current is None:
            raise _not_found("vendor", ident)
        data = ctx.json()
        if isinstance(data.get("paymentInformation"), dict) and data["paymentInformation"].get("bankAccount"):
            raise _bad("Bank account cannot be changed with PATCH /v3/vendors; use /v3/vendors/{id}/bank-account.")
        readonly = ("id", "archived", "createdTime", "updatedTime", "paymentInformation")
        editable = {k: v for k, v in data.items() if k not in readonly}
        merged = _deep_merge(self._vendor_input_view(current), editable)
        vendor = self._vendor_normalize(merged, "", base=current)
        # bank details are kept as they were (they change only via the bank-account endpoints)
        pay_info = dict(current.get("paymentInformation") or {})
        sent_info = data.get("paymentInformation")
        payee = sent_info.get("payeeName") if isinstance(sent_info, dict) else None
        if isinstance(payee, str) and payee.strip():
            pay_info["payeeName"] = payee
        vendor["paymentInformation"] = pay_info
        vendor["updatedTime"] = ctx.now
        vendor = self._vendor_order(vendor)
        ctx.org.vendors[ident] = vendor
        if vendor["name"] != current["name"]:
            for bill in ctx.org.bills.values():
                if bill["vendorId"] == ident:
                    bill["vendorName"] = vendor["name"]
        self._emit(ctx.org, "vendor.updated", "vendor", vendor, ident, ctx.out)
        return 200, vendor

    @staticmethod
    def _vendor_input_view(vendor):
        view = copy.deepcopy(vendor)
        view.get("address", {}).pop("countryName", None)
        view.pop("paymentInformation", None)
        return view
