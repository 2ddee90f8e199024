"""Stateful simulator of the BILL (Bill.com) v3 API and its webhook ("connect-events") service.

Tests, the demo and the benchmarks talk to this WSGI app over real HTTP (see `server.serve`) instead of the
BILL sandbox, so it reproduces what a client has to cope with there: sessions that expire after 35 idle
minutes (401 + BDC_1109), the 3-concurrent-requests-per-org limit (BDC_1322), the hourly request cap
(BDC_1144), error bodies that are JSON *arrays*, opaque list paging with its odd empty last page, bulk
endpoints that are all-or-nothing, and signed webhooks that are retried and finally switch the subscription
off.  Faults can be injected (latency, random 500s, lost responses, canned errors, duplicate webhooks).

Paths: main API under `/connect/v3/...`, webhook service under `/connect-events/v3/...`, unauthenticated
control endpoints under `/_sim/...` (stats, knobs, pay/void helpers) for a demo running us in another process.

Facts come from `/work/shared/reference/bill-api.md`.  Where that sheet marks something unconfirmed the
choice made here is commented with "[U]" and, when cheap, is a knob (a plain attribute on BillSimulator).

Money is `Decimal` internally and is written as a JSON number with two decimals (`228.99`, `149.00`).
All state sits behind one RLock; the lock is never held while sleeping for latency or while talking to a
webhook receiver, so the concurrency limit is observable and slow receivers do not stall the API.
"""

from .common import ApiError, dumps, sign
from .listing import paginate, parse_filters, parse_sort
from .simulator import BillSimulator, make_app

__all__ = ["ApiError", "BillSimulator", "dumps", "make_app", "paginate", "parse_filters", "parse_sort", "sign"]
