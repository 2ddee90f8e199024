"""BILL simulator: the BillSimulator class (state, knobs) assembled from one mixin per concern."""

from __future__ import annotations

import collections
import itertools
import random
import threading
import time

from connector.sandbox import catalog

from .bills import BillsMixin
from .classifications import ClassificationsMixin
from .control import ControlMixin
from .credits import CreditsMixin
from .documents import DocumentsMixin
from .generic import GenericMixin
from .helpers import HelpersMixin
from .payments import PaymentsMixin
from .routes import KNOBS
from .sessions import SessionsMixin
from .state import _Org, _Session
from .subscriptions import SubscriptionsMixin
from .vendors import VendorsMixin
from .webhook_delivery import WebhookDeliveryMixin
from .wsgi import WsgiMixin


class BillSimulator(HelpersMixin, WsgiMixin, SessionsMixin, GenericMixin, VendorsMixin, ClassificationsMixin,
                    BillsMixin, PaymentsMixin, SubscriptionsMixin, WebhookDeliveryMixin, ControlMixin, CreditsMixin,
                    DocumentsMixin):
    """WSGI app simulating BILL v3 + connect-events. Knobs are plain attributes and may change at any time."""

    def __init__(self, *, seed=True, clock=None):
        self._lock = threading.RLock()
        self._clock = clock or time.time
        # knobs
        self.latency = 0.0
        self.error_rate = 0.0
        self.concurrency_limit = 3
        # [U] HTTP status of BDC_1322/BDC_1144 on /connect/v3 is unconfirmed; the webhook service uses 429.
        self.rate_limit_status = 429
        self.hourly_limit = 20000
        self.login_hourly_limit = 200
        self.session_idle_seconds = 35 * 60
        self.webhook_sync = False
        self.webhook_retry_delays = (2, 4, 8, 16)
        self.webhook_duplicate_rate = 0.0
        self.webhook_timeout = 10.0
        self.webhook_bill_updated_partial = False  # [U] True: bill.updated carries only changed fields
        self.emit_bill_updated_on_payment = True  # [U] whether paying a bill emits bill.updated
        self.allow_http_localhost = True  # BILL requires https; loopback http is a simulator relaxation
        self.max_vendors_bulk = 20
        self.max_bills_bulk = 100
        self.require_vendor_address = True  # vendor create refused without line1, city, zipOrPostalCode, country
        self.untrusted_session = False  # True: POST /v3/payments answers 403 BDC_1361 "Untrusted session."
        # observations
        self.request_count = 0
        self.login_count = 0
        self.requests_by_path = collections.Counter()
        self.max_in_flight_seen: dict[tuple, int] = {}
        self.rejected_concurrent = 0
        self.rejected_hourly = 0
        self.deliveries: list[tuple] = []
        self.webhooks_dropped = 0
        # state
        self._rng = random.Random(0)  # error_rate / duplicate rolls: reproducible runs
        self._id_rng = random.Random(1)
        self._seq = itertools.count(1)
        self._orgs: dict[str, _Org] = {}
        self._users: dict[str, dict] = {}
        self._dev_keys: set[str] = set()
        self._sessions: dict[str, _Session] = {}
        self._in_flight: dict[tuple, int] = collections.defaultdict(int)
        self._hourly: dict[str, list] = {}  # devKey -> [hour, count]
        self._login_hourly: dict[str, list] = {}
        self._idem_in_flight: set[tuple] = set()
        self._fail_rules: list[dict] = []
        self._lose_rules: list[dict] = []
        self._txn = itertools.count(202600001)
        # webhook delivery machinery (own lock: never wait on the state lock while sleeping)
        self._wh_cond = threading.Condition()
        self._wh_heap: list = []
        self._wh_pending = 0
        self._wh_seq = itertools.count()
        self._wh_workers: list[threading.Thread] = []
        self._wh_closed = False
        self._http_local = threading.local()
        self.add_org(catalog.BILL_ORG_ID, catalog.BILL_USER, catalog.BILL_PASSWORD, catalog.BILL_DEV_KEY, seed=seed)


def make_app(**kw) -> BillSimulator:
    """A simulator; `seed` and `clock` go to the constructor, any other keyword sets the knob of that name."""
    sim = BillSimulator(seed=kw.pop("seed", True), clock=kw.pop("clock", None))
    for name, value in kw.items():
        if name not in KNOBS:
            raise TypeError(f"unknown BillSimulator knob {name!r}")
        setattr(sim, name, value)
    return sim
