"""Keep SAP suppliers and BILL vendors aligned (`sync NAME --step vendors`).

For each SAP supplier (BusinessPartners, CardType supplier) there is one VendorLink. An unlinked supplier
first tries to reuse a BILL vendor that clearly is the same company (same tax id; or same normalized name
with the same e-mail or address); an ambiguous match creates nothing and waits for a person; otherwise a
BILL vendor is created, in bulk (≤ 20 per request, all-or-nothing). Changes of name, e-mail, phone, address
or tax id in SAP are sent to BILL. A create whose answer was lost is resolved by looking the vendor up by
name before anything is sent again, so a retry never makes a second vendor.

Address: BILL vendors are created with `line1, city, stateOrProvince, zipOrPostalCode, country` (BILL's API
requires an address; it is where checks go). It comes from the supplier's **pay-to** address: in SAP a supplier's
"Pay To" addresses are the `bo_BillTo` rows of BPAddresses (ship-to rows are where goods ship from, never used);
the one named by `BilltoDefault` wins, else the first bill-to row. A supplier without a usable one (street, city,
zip code, 2-letter country, and the state for US/CA) is not created: it is held with a message naming the missing
SAP fields, and goes through by itself on the first run after someone fills them in SAP. Nothing is invented.
"""

import hashlib
import json
import re
from datetime import UTC, datetime, timedelta

from django.utils import timezone

from audit import trail
from audit.models import AuditEvent
from connector.clients.errors import BillError, ResponseLost
from connector.clients.sap import odata_quote
from mappings.models import VendorLink

from . import SyncStep
from .coding import iso_currency

SUPPLIER_SELECT = [
    "CardCode", "CardName", "CardType", "FederalTaxID", "EmailAddress", "Phone1", "Currency", "Frozen", "Valid",
    "BilltoDefault", "BPAddresses", "UpdateDate", "UpdateTime",
]
PAY_TO_TYPES = ("bo_BillTo", "B")  # a supplier's "Pay To" address in the SAP client is a bill-to row
# Address part BILL needs -> the SAP field (Addresses tab) a person fills in
ADDRESS_PARTS = {"line1": "Street", "city": "City", "zipOrPostalCode": "Zip Code", "country": "Country"}
BULK_LIMIT = 20
LEGAL_SUFFIXES = {"inc", "llc", "ltd", "co", "corp", "corporation", "company", "gmbh", "ag", "sa", "plc", "the", "lp", "llp"}
STREET_WORDS = {"street": "st", "drive": "dr", "road": "rd", "avenue": "ave", "boulevard": "blvd", "lane": "ln",
                "suite": "ste", "north": "n", "south": "s", "east": "e", "west": "w"}
Status = VendorLink.Status


# --- normalizing -----------------------------------------------------------------------------------------
def norm_name(name):
    words = re.findall(r"[a-z0-9]+", (name or "").lower().replace("&", " and "))
    return " ".join(w for w in words if w not in LEGAL_SUFFIXES)


def norm_tax_id(value):
    return re.sub(r"[^0-9a-z]", "", (value or "").lower())


def norm_email(value):
    return (value or "").strip().lower()


def norm_address(addr):
    if not addr:
        return ""
    words = re.findall(r"[a-z0-9]+", (addr.get("line1") or "").lower())
    street = " ".join(STREET_WORDS.get(w, w) for w in words)
    zipcode = re.sub(r"\s", "", addr.get("zipOrPostalCode") or "")[:5]
    return f"{street}|{zipcode}" if street and zipcode else ""


def supplier_data(bp, currency_codes=None):
    """The SAP supplier fields we keep aligned, in BILL's vocabulary (B1 currency codes mapped to ISO)."""
    bill_to = pay_to_address(bp)
    address = None
    if bill_to:
        street = " ".join(x for x in (bill_to.get("StreetNo"), bill_to.get("Street")) if x)
        address = {
            "line1": street or bill_to.get("Block") or "", "city": bill_to.get("City") or "",
            "stateOrProvince": bill_to.get("State") or "", "zipOrPostalCode": bill_to.get("ZipCode") or "",
            "country": bill_to.get("Country") or "",
        }
    currency = iso_currency(bp.get("Currency"), currency_codes)  # "##" (all currencies) or unknown: ''
    return {
        "name": (bp.get("CardName") or bp["CardCode"])[:100],
        "email": bp.get("EmailAddress") or "",
        "phone": bp.get("Phone1") or "",
        "taxId": bp.get("FederalTaxID") or "",
        "address": address,
        "currency": currency,
    }


def pay_to_address(bp):
    """The supplier's pay-to (bo_BillTo) address: the default one (BilltoDefault), else the first; None without one."""
    pay_to = [a for a in bp.get("BPAddresses") or [] if a.get("AddressType") in PAY_TO_TYPES]
    default = bp.get("BilltoDefault")
    return next((a for a in pay_to if default and a.get("AddressName") == default), pay_to[0] if pay_to else None)


def address_problem(bp, data):
    """Why BILL cannot get this supplier's address ('' when it can): names the SAP fields to fill in."""
    address = data.get("address")
    where = f"SAP supplier {bp['CardCode']}"
    if not address:
        return (f"{where} has no pay-to address: BILL needs one to create the vendor. In SAP, add a Pay To address "
                "(Addresses tab) with Street, City, Zip Code and Country; it goes through on the next run.")
    missing = [sap for key, sap in ADDRESS_PARTS.items() if not (address.get(key) or "").strip()]
    country = (address.get("country") or "").strip()
    if country and len(country) != 2:
        missing.append(f"Country (a 2-letter code, not {country!r})")
    if country in ("US", "CA") and not (address.get("stateOrProvince") or "").strip():
        missing.append("State")
    if not missing:
        return ""
    name = bp_address_name(bp)
    return (f"{where}: its pay-to address{name} lacks {', '.join(missing)}, which BILL needs to create the vendor. "
            "Fill them in SAP (Addresses tab); it goes through on the next run.")


def bp_address_name(bp):
    chosen = pay_to_address(bp)
    return f" {chosen['AddressName']!r}" if chosen and chosen.get("AddressName") else ""


def parse_time(value):
    """BILL's ISO-8601 times ("2026-12-16T23:56:52.127+00:00"); unparseable → the distant past."""
    try:
        parsed = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return datetime.min.replace(tzinfo=UTC)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def fingerprint(data):
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def invalid_reason(bp):
    if bp.get("Frozen") == "tYES":
        return f"SAP supplier {bp['CardCode']} is frozen (inactive) in SAP: its invoices are held. Unfreeze it in SAP to sync it."
    if bp.get("Valid") == "tNO":
        return (f"SAP supplier {bp['CardCode']} is not valid (inactive) in SAP: its invoices are held. "
                "Activate it in SAP to sync it.")
    if not (bp.get("CardName") or "").strip():
        return f"SAP supplier {bp['CardCode']} has no name: BILL requires one. Fill in the name in SAP."
    return ""


def vendor_body(data, create=True):
    """BILL create/patch body from supplier data (empty values left out so we never blank BILL's fields)."""
    body = {"name": data["name"]}
    if data["email"]:
        body["email"] = data["email"]
    if data["phone"]:
        body["phone"] = data["phone"]
    if data["address"] and data["address"].get("line1"):
        body["address"] = {k: v for k, v in data["address"].items() if v}
    elif create:
        raise ValueError(f"no usable address for {data['name']!r}")  # held before this point (address_problem)
    if data["taxId"]:
        body["additionalInfo"] = {"taxId": data["taxId"], "taxIdType": "EIN"}
    if create:
        body["accountType"] = "BUSINESS"
        body["billCurrency"] = data["currency"] or "USD"
    return body


def bill_view(vendor):
    """The part of a BILL vendor we compare against SAP."""
    address = vendor.get("address") or {}
    return {
        "name": vendor.get("name") or "", "email": vendor.get("email") or "", "phone": vendor.get("phone") or "",
        "taxId": (vendor.get("additionalInfo") or {}).get("taxId") or "",
        "address_key": norm_address(address),
    }


# --- matching --------------------------------------------------------------------------------------------
class VendorIndex:
    """All active BILL vendors of the organization, read once per run."""

    def __init__(self, vendors):
        self.by_id = {v["id"]: v for v in vendors}
        self.by_tax, self.by_name = {}, {}
        for v in vendors:
            tax = norm_tax_id((v.get("additionalInfo") or {}).get("taxId"))
            if tax:
                self.by_tax.setdefault(tax, []).append(v)
            self.by_name.setdefault(norm_name(v.get("name")), []).append(v)

    @classmethod
    def load(cls, bill):
        return cls(list(bill.iterate("/v3/vendors", filters=["archived:eq:false"])))

    def add(self, vendor):
        self.by_id[vendor["id"]] = vendor
        tax = norm_tax_id((vendor.get("additionalInfo") or {}).get("taxId"))
        if tax:
            self.by_tax.setdefault(tax, []).append(vendor)
        self.by_name.setdefault(norm_name(vendor.get("name")), []).append(vendor)

    def match(self, data, taken):
        """('match', vendor, reason) | ('ambiguous', [vendors], reason) | ('none', None, '')."""
        tax = norm_tax_id(data["taxId"])
        if tax:
            found = [v for v in self.by_tax.get(tax, []) if v["id"] not in taken]
            if len(found) == 1:
                return "match", found[0], f"same tax id {data['taxId']}"
            if len(found) > 1:
                return "ambiguous", found, f"{len(found)} BILL vendors have tax id {data['taxId']}"
        same_name = [v for v in self.by_name.get(norm_name(data["name"]), []) if v["id"] not in taken]
        if tax:  # a vendor with another tax id is another company, whatever its name
            same_name = [v for v in same_name if norm_tax_id((v.get("additionalInfo") or {}).get("taxId")) in ("", tax)]
        if not same_name:
            return "none", None, ""
        email, addr = norm_email(data["email"]), norm_address(data["address"])
        confirmed = [
            v for v in same_name
            if (email and norm_email(v.get("email")) == email) or (addr and norm_address(v.get("address")) == addr)
        ]
        if len(confirmed) == 1:
            what = "e-mail" if email and norm_email(confirmed[0].get("email")) == email else "address"
            return "match", confirmed[0], f"same name and {what}"
        reason = (f"{len(confirmed)} BILL vendors named like {data['name']!r} share its e-mail or address" if confirmed
                  else f"BILL has {len(same_name)} vendor(s) named like {data['name']!r} with another e-mail and address")
        return "ambiguous", confirmed or same_name, reason


def candidate_summary(vendor):
    address = vendor.get("address") or {}
    return {
        "id": vendor["id"], "name": vendor.get("name"), "email": vendor.get("email") or "",
        "taxId": (vendor.get("additionalInfo") or {}).get("taxId") or "",
        "address": ", ".join(x for x in (address.get("line1"), address.get("city"), address.get("zipOrPostalCode")) if x),
    }


# --- the step --------------------------------------------------------------------------------------------
class VendorAligner(SyncStep):
    """One run of vendor alignment for one connection."""

    summary_keys = ("linked", "created", "updated", "review", "invalid", "failed", "unchanged")

    def __init__(self, connection, sap, bill, **kw):
        super().__init__(connection, sap, bill, **kw)
        self._index = None
        self._taken = None
        self.planned = []

    @property
    def index(self):
        if self._index is None:
            self._index = VendorIndex.load(self.bill)
        return self._index

    def read_suppliers(self, card_codes=None):
        base = "CardType eq 'cSupplier'"
        if not card_codes:
            return list(self.sap.iterate("BusinessPartners", filter=base, select=SUPPLIER_SELECT, orderby="CardCode"))
        suppliers = []
        codes = sorted(set(card_codes))
        for start in range(0, len(codes), 20):  # keep $filter short for on-premise URL limits
            chunk = " or ".join(f"CardCode eq {odata_quote(c)}" for c in codes[start:start + 20])
            suppliers += self.sap.iterate("BusinessPartners", filter=f"{base} and ({chunk})", select=SUPPLIER_SELECT)
        return suppliers

    def run(self, card_codes=None):
        suppliers = self.read_suppliers(card_codes)
        links = {lk.card_code: lk for lk in VendorLink.objects.filter(connection=self.connection)}
        to_create, to_update = [], []
        for bp in suppliers:
            link = links.get(bp["CardCode"]) or VendorLink(connection=self.connection, card_code=bp["CardCode"])
            data = supplier_data(bp, self.connection.sap_currency_codes)
            link.address_problem = address_problem(bp, data)
            link.card_name = data["name"]
            link.sap_data = data
            link.sap_fingerprint = fingerprint(data)
            reason = invalid_reason(bp)
            if reason:
                self._set(link, Status.INVALID, reason)
                self.summary["invalid"] += 1
                continue
            if link.status == Status.CREATING:
                self._resolve_lost_create(link)
            if link.bill_vendor_id:
                # Linked before, even if since then invalid in SAP or a failed update: keep that vendor, never re-match
                # (a re-match by a changed name would create a second vendor for the same supplier).
                if link.synced_fingerprint != link.sap_fingerprint:
                    to_update.append(link)
                elif link.status != Status.LINKED:
                    self.summary["unchanged"] += 1
                    self._set(link, Status.LINKED, "")
                else:
                    self.summary["unchanged"] += 1
                    self._save(link)
                continue
            if link.create_new and not link.bill_vendor_id:
                self._queue_create(link, to_create)  # a person decided none of the candidates is this supplier
                continue
            if link.status == Status.REVIEW:
                self.summary["review"] += 1
                self._save(link)
                continue
            self._match_or_queue(link, to_create, to_update)
        self._create(to_create)
        for link in to_update:
            self._update(link)
        return self.summary

    # --- steps for one link ------------------------------------------------------------------------------
    @property
    def taken(self):
        """BILL vendor ids already linked to a supplier of this connection (including links made in this run)."""
        if self._taken is None:
            self._taken = set(VendorLink.objects.filter(connection=self.connection).exclude(bill_vendor_id="")
                              .values_list("bill_vendor_id", flat=True))
        return self._taken

    def _match_or_queue(self, link, to_create, to_update):
        outcome, found, reason = self.index.match(link.sap_data, self.taken - {link.bill_vendor_id})
        if outcome == "match":
            self.taken.add(found["id"])
            self.planned.append(f"link SAP {link.card_code} {link.card_name!r} to BILL vendor {found['id']} ({reason})")
            link.bill_vendor_id, link.bill_vendor_name, link.match_reason = found["id"], found.get("name", ""), reason
            link.synced_fingerprint = fingerprint_of_bill(found, link.sap_data)
            self._set(link, Status.LINKED, "")
            self.summary["linked"] += 1
            if link.synced_fingerprint != link.sap_fingerprint:
                to_update.append(link)
        elif outcome == "ambiguous":
            link.candidates = [candidate_summary(v) for v in found]
            self._set(link, Status.REVIEW, f"Ambiguous match: {reason}. Pick the right BILL vendor or choose "
                                            "'create a new BILL vendor' in the admin.")
            self.summary["review"] += 1
        else:
            self._queue_create(link, to_create)

    def _queue_create(self, link, to_create):
        """Create only with a usable address; otherwise hold the supplier (and so its invoices) saying what to fill."""
        if link.address_problem:
            self._set(link, Status.INVALID, link.address_problem)
            self.summary["invalid"] += 1
            return
        to_create.append(link)

    def _resolve_lost_create(self, link):
        """A previous create got no answer: find what it made (same name, created since the attempt) before retrying."""
        since = (link.create_attempted_at or timezone.now()) - timedelta(minutes=10)
        found = [
            v for v in self.bill.iterate("/v3/vendors", filters=[f"name:eq:{json.dumps(link.sap_data['name'])}"])
            if not v.get("archived") and parse_time(v.get("createdTime")) >= since and v["id"] not in self.taken
        ]
        if len(found) >= 1:
            # Several suppliers of one name in one lost bulk: each adopts its own (same tax id / e-mail first).
            tax, email = norm_tax_id(link.sap_data.get("taxId")), norm_email(link.sap_data.get("email"))
            vendor = sorted(found, key=lambda v: (
                not (tax and norm_tax_id((v.get("additionalInfo") or {}).get("taxId")) == tax),
                not (email and norm_email(v.get("email")) == email),
                v.get("createdTime") or "",
            ))[0]
            self.taken.add(vendor["id"])
            link.bill_vendor_id, link.bill_vendor_name = vendor["id"], vendor.get("name", "")
            link.match_reason = "found after a create whose answer was lost"
            link.synced_fingerprint = link.sap_fingerprint
            self._set(link, Status.LINKED, "")
            self.index.add(vendor)
            if not self.dry_run:
                trail.log(link, AuditEvent.Kind.OUTCOME, f"Adopted BILL vendor {vendor['id']} created by an earlier attempt")
        else:
            self._set(link, Status.PENDING, "")

    def _create(self, links):
        if not links:
            return
        for link in links:
            self.planned.append(f"create BILL vendor for SAP {link.card_code} {link.card_name!r}")
        if self.dry_run:
            self.summary["created"] += len(links)
            return
        for start in range(0, len(links), BULK_LIMIT):
            self._create_batch(links[start:start + BULK_LIMIT])

    def _create_batch(self, batch):
        now = timezone.now()
        for link in batch:
            link.create_attempted_at = now
            self._set(link, Status.CREATING, "")  # written before the call: a crash leaves evidence, not a duplicate
        try:
            if len(batch) == 1:
                created = [self.bill.post("/v3/vendors", vendor_body(batch[0].sap_data))]
            else:
                answer = self.bill.post("/v3/vendors/bulk", [vendor_body(lk.sap_data) for lk in batch]) or {}
                created = answer.get("vendors", []) if isinstance(answer, dict) else answer
        except ResponseLost:
            for link in batch:
                self._resolve_lost_create(link)
                if link.status == Status.LINKED:
                    self.summary["created"] += 1
                else:
                    self._fail(link, "BILL did not answer the create request; will look it up and retry on the next run")
            return
        except BillError as exc:
            if len(batch) > 1 and exc.permanent:
                # All-or-nothing: one bad vendor sank the batch. Send them one by one to isolate it.
                for link in batch:
                    self._create_batch([link])
                return
            for link in batch:
                self._fail(link, f"BILL refused to create the vendor: {exc}")
            return
        by_name = {}
        for vendor in created:
            by_name.setdefault(vendor.get("name"), []).append(vendor)
        for link in batch:
            vendor = (by_name.get(link.sap_data["name"]) or [None]).pop(0)
            if vendor is None:
                self._resolve_lost_create(link)
                continue
            self.taken.add(vendor["id"])
            link.bill_vendor_id, link.bill_vendor_name = vendor["id"], vendor.get("name", "")
            link.match_reason = "created by ml-connector"
            link.synced_fingerprint = link.sap_fingerprint
            self._set(link, Status.LINKED, "")
            self.index.add(vendor)
            self.summary["created"] += 1
            trail.log(link, AuditEvent.Kind.OUTCOME, f"Created BILL vendor {vendor['id']}")

    def _update(self, link):
        self.planned.append(f"update BILL vendor {link.bill_vendor_id} from SAP {link.card_code}")
        if self.dry_run:
            self.summary["updated"] += 1
            return
        with trail.about(link):
            try:
                vendor = self.bill.patch(f"/v3/vendors/{link.bill_vendor_id}", vendor_body(link.sap_data, create=False))
            except BillError as exc:
                self._fail(link, f"BILL refused the vendor update: {exc}")
                return
        link.bill_vendor_name = (vendor or {}).get("name", link.bill_vendor_name)
        link.synced_fingerprint = link.sap_fingerprint
        self._set(link, Status.LINKED, "")
        self.summary["updated"] += 1
        trail.log(link, AuditEvent.Kind.OUTCOME, f"Updated BILL vendor {link.bill_vendor_id} with SAP's data")

    # --- persistence -------------------------------------------------------------------------------------
    def _fail(self, link, message):
        self._set(link, Status.FAILED, message)
        self.summary["failed"] += 1

    def _set(self, link, status, error):
        before = {"status": link.status, "last_error": link.last_error, "bill_vendor_id": link.bill_vendor_id}
        link.status, link.last_error = status, error
        if status == Status.LINKED:
            link.synced_at = timezone.now()
            link.candidates = []
        self._save(link)
        if not self.dry_run and link.pk:
            after = {"status": link.status, "last_error": link.last_error, "bill_vendor_id": link.bill_vendor_id}
            trail.log_change(link, f"Vendor {link.card_code}: {link.get_status_display()}", before, after)

    def _save(self, link):
        if not self.dry_run:
            link.save()


def fingerprint_of_bill(vendor, sap_data):
    """Fingerprint of what BILL already holds, in SAP terms: equal to SAP's when nothing needs sending."""
    view = bill_view(vendor)
    same_address = view["address_key"] == norm_address(sap_data["address"])
    merged = {
        "name": view["name"], "email": view["email"] or sap_data["email"], "phone": view["phone"] or sap_data["phone"],
        "taxId": view["taxId"] or sap_data["taxId"], "address": sap_data["address"] if same_address else view["address_key"],
        "currency": sap_data["currency"],
    }
    return fingerprint(merged)
