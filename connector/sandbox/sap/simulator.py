"""SAP simulator: the SapSimulator class (state, knobs) assembled from one mixin per concern."""

from __future__ import annotations

import random
import threading
from collections import Counter
from datetime import datetime, timedelta

from .. import catalog
from .attachments import AttachmentsMixin
from .company import CompanyMixin
from .control import ControlMixin
from .credit_notes import CreditNotesMixin
from .invoices import InvoicesMixin
from .master_data import MasterDataMixin
from .payments import PaymentsMixin
from .querying import QueryMixin
from .routing import RoutingMixin
from .schema import DEFAULT_PAGE_SIZE, ENTITY_SETS, LOCAL_CURRENCY, SapError
from .seeding import SeedingMixin
from .sessions import SessionsMixin
from .validation import ValidationMixin
from .values import _copy_row
from .writes import WritesMixin
from .wsgi import WsgiMixin


class SapSimulator(WsgiMixin, SessionsMixin, RoutingMixin, QueryMixin, WritesMixin, MasterDataMixin, ValidationMixin,
                   InvoicesMixin, PaymentsMixin, SeedingMixin, CompanyMixin, ControlMixin, CreditNotesMixin,
                   AttachmentsMixin):
    """SAP B1 Service Layer simulator; call it as a WSGI app, drive it with its knobs and helpers.

    `seed=True` loads catalog.py master data (vendors, accounts, cost centres, tax codes...), no invoices;
    `clock` is a callable returning the server-local naive datetime used for UpdateDate/UpdateTime.
    """

    def __init__(self, *, seed=True, clock=None, company_db=catalog.SAP_COMPANY_DB):
        self._lock = threading.RLock()
        self._rng = random.Random(0)
        self.company_db = company_db  # the one company database this server has
        # Whether cancelling an invoice bumps the original's UpdateDate/UpdateTime (UNCONFIRMED in the fact
        # sheet): off, only the new cancellation document shows up in a delta read.
        self.touch_original_on_cancel = True
        self.clock = clock
        self.clock_offset = timedelta(0)
        # knobs
        self.latency = 0.0
        self.error_rate = 0.0
        self.session_timeout = 30
        self.session_idle_seconds = None
        # Expired session: always HTTP 401 code 301 (api-facts-addendum §9; SAP never says -5002 for it). "standard":
        # v1 a numeric code and a {lang, value} message, v2 both strings; "strings": strings on v1 too (SL 1000190).
        self.expiry_response = "standard"
        self.login_concurrency_limit = 2
        self.login_latency = 0.0
        self.default_page_size = DEFAULT_PAGE_SIZE
        self.next_link_style = "relative"  # "relative" to the service root (live SL) or "absolute" (SAP's guide)
        # Company settings (AdminInfo): the B1 code of the local currency ("$" in many real companies) and
        # whether branches are on. With branches, documents and payments must name an active branch (-5002).
        self.local_currency = LOCAL_CURRENCY
        self.enable_branches = False
        # counters
        self.request_count = 0
        self.login_count = 0
        self.requests_by_path = Counter()
        # state
        self._sessions: dict[str, float] = {}
        self._logins_in_progress = 0
        self._lost_rules: list[dict] = []
        self._fail_rules: list[dict] = []
        self._tables: dict[str, dict] = {name: {} for name in ENTITY_SETS}
        self._versions: Counter = Counter()
        self._next_entry = {"PurchaseInvoices": 1, "VendorPayments": 1}
        self._next_num = {"PurchaseInvoices": 30001, "VendorPayments": 40001}
        self._manually_closed: set[int] = set()
        self._filter_cache: dict = {}
        self._query_cache: dict = {}
        if seed:
            self._seed_master_data()

    # ----------------------------------------------------------------------------------------------- knobs/API
    def now(self) -> datetime:
        current = self.clock() if self.clock else datetime.now()
        return (current.replace(tzinfo=None) + self.clock_offset).replace(microsecond=0)

    def lose_next_response(self, method, path_contains, count=1):
        """Execute the next `count` matching requests but drop the connection instead of answering."""
        with self._lock:
            self._lost_rules.append({"method": (method or "*").upper(), "path": path_contains, "remaining": count})

    def fail_next(self, method, path_contains, status, code, message, count=1):
        """Answer the next `count` matching requests with this error, without executing them."""
        with self._lock:
            self._fail_rules.append({"method": (method or "*").upper(), "path": path_contains, "remaining": count,
                                     "error": SapError(status, code, message)})

    def expire_all_sessions(self):
        with self._lock:
            self._sessions.clear()

    def reset_stats(self):
        with self._lock:
            self.request_count = 0
            self.login_count = 0
            self.requests_by_path = Counter()

    def stats(self) -> dict:
        with self._lock:
            return {"request_count": self.request_count, "login_count": self.login_count,
                    "requests_by_path": dict(self.requests_by_path)}

    def entities(self, name) -> list[dict]:
        """Copies of the stored rows of an entity set, in key order (Python values: Decimal, date, time)."""
        with self._lock:
            table = self._tables[name]
            return [_copy_row(table[key]) for key in sorted(table)]


def make_app(**kw) -> SapSimulator:
    """Build a simulator; `seed`/`clock` go to the constructor, any other keyword sets the knob of that name."""
    init = {k: kw.pop(k) for k in ("seed", "clock") if k in kw}
    simulator = SapSimulator(**init)
    for name, value in kw.items():
        if not hasattr(simulator, name):
            raise TypeError(f"unknown simulator option {name!r}")
        setattr(simulator, name, value)
    return simulator
