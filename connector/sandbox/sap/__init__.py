"""Stateful simulator of the SAP Business One Service Layer (REST/OData) as a WSGI app.

Tests, the demo and the benchmarks talk to this instead of a real SAP system. It follows the fact sheet
`/work/shared/reference/sap-b1-service-layer.md`: service roots `/b1s/v1` (OData V3) and `/b1s/v2` (OData V4)
sharing data and sessions, Login/Logout with the documented cookies, idle session expiry, server-driven paging
with relative nextLinks, the OData query subset SAP supports, the SAP error shapes and codes, purchase invoices,
vendor payments and the master data the connector reads (catalog.py). Knobs inject latency, 5xx errors, lost
responses and expired sessions, and `/_sim/...` endpoints let another process drive them.

Internally rows hold Python values (Decimal money, `date`, `time`, enum names); they are rendered per
version on the way out (numbers as JSON floats, v1 dates "2026-01-15", v2 "2026-01-15T00:00:00Z",
times "13:45:07" in both).

Document totals (Decimal, ROUND_HALF_UP to cents):
  * header discount D % applies to every line: discounted = round(LineTotal * (1 - D/100), 2);
  * line TaxTotal = round(discounted * rate/100, 2); freight TaxSum = round(freight LineTotal * rate/100, 2);
  * TotalDiscount = sum(LineTotal) - sum(discounted); VatSum = sum(line TaxTotal) + sum(freight TaxSum);
  * before rounding: sum(discounted) + sum(freight) + VatSum; with Rounding tYES, RoundingDiffAmount =
    that sum rounded to a whole unit minus the sum (else 0); DocTotal includes the rounding difference.
  For a foreign-currency document (DocCurrency != USD) the amounts given are in the document currency and the
  totals above become the *FC fields (DocTotalFc, VatSumFc, RowTotalFC...); the local-currency fields are the FC
  values times DocRate rounded field by field, as SAP keeps both.

Simulator choices where the fact sheet is silent or UNCONFIRMED (all documented at their code too):
  * Time properties (UpdateTime, CreateTime, DocTime) compare at minute precision in $filter, both sides
    truncated (the guide's "only HOUR/MINUTE parts are effective"; whether seconds count is UNCONFIRMED).
  * Server-local naive time from `clock`; session idle expiry uses the monotonic clock, not `clock`.
  * v2 dates render as "YYYY-MM-DDT00:00:00Z" (UNCONFIRMED), times as "HH:MM:SS".
  * A full last page still carries a nextLink; with $top no nextLink once $top is used up.
  * Posting a payment bumps the paid invoices' UpdateDate/UpdateTime (UNCONFIRMED in SAP).
  * VendorPayments: sum(SumApplied) must equal TransferSum + CashSum (SAP would post the difference on
    account; UNCONFIRMED), DocType defaults to rSupplier, only bank transfer/cash and it_PurchaseInvoice lines.
  * Cancelling: the original gets Cancelled tYES / CancelStatus csYes (SAP's enum has csYes/csNo/csCancellation),
    the cancellation document csCancellation and the original's DocDate (CancelbyCurrentSystemDate uses today).
  * PATCH on a posted invoice may change lines and amounts (real SAP forbids most such edits; tests use it to
    model changes), except on cancelled/closed/partly paid invoices (-1029 "Field cannot be updated").
  * Unknown resource: 404 -1000 "Resource not found for the segment 'X'."; business-rule wording below is the
    simulator's own where the sheet gives no exact text.

  * Inline count: v1 honours only $inlinecount=allpages, v2 only $count=true; the other spelling is ignored.
  * $expand is refused (400/201): the simulated sets have no navigation properties; $batch/$metadata are absent.

Control endpoints (no auth, JSON, not counted, no latency/errors) for a simulator in another process:
  GET /_sim/stats, POST /_sim/reset_stats, POST /_sim/knobs {latency, error_rate, session_timeout,
  session_idle_seconds, expiry_response, login_concurrency_limit, login_latency, default_page_size},
  POST /_sim/invoices {add_invoice kwargs}, POST /_sim/invoices/<DocEntry> {update_invoice kwargs},
  POST /_sim/invoices/<DocEntry>/cancel|close|reopen, POST /_sim/seed {seed_invoices kwargs},
  POST /_sim/seed_demo, POST /_sim/expire_sessions, POST /_sim/clock {offset_seconds | advance_seconds},
  POST /_sim/lose_next {method, path_contains, count}, POST /_sim/fail_next {method, path_contains, status,
  code, message, count}, GET /_sim/entities/<EntitySet> (rows rendered as v1 JSON).

Errors (HTTP status, code): session 401/301 (knob `expiry_response="strings"`: string code and message on v1 too),
login -304/-306, parallel logins 500/299, query 400/201, unknown body property 400/-1000, missing key 404/-2028,
bad foreign key 400/-2028 or -5002, business rules 400/-10, DELETE on documents 400/-5006, non-updatable field
400/-1029.
"""

from .schema import SapError
from .simulator import SapSimulator, make_app

__all__ = ["SapError", "SapSimulator", "make_app"]
