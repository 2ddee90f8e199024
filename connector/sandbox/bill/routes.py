"""BILL simulator: route tables and knob names."""

from __future__ import annotations

import collections
import re

# --------------------------------------------------------------------------------------------------------------
# routing

_T = collections.namedtuple("_T", "method template handler extra idem")


def _r(method, template, handler, *extra, idem=False):
    return _T(method, template, handler, extra, idem)


MAIN_ROUTES = [
    _r("POST", "/v3/login", "login"),
    _r("GET", "/v3/login/session", "session_info"),
    _r("POST", "/v3/logout", "logout"),
    _r("GET", "/v3/vendors", "list", "vendors"),
    _r("POST", "/v3/vendors", "vendor_create"),
    _r("POST", "/v3/vendors/bulk", "vendor_bulk"),
    _r("GET", "/v3/vendors/{id}", "get", "vendors"),
    _r("PATCH", "/v3/vendors/{id}", "vendor_patch"),
    _r("POST", "/v3/vendors/{id}/archive", "archive", "vendors", True),
    _r("POST", "/v3/vendors/{id}/restore", "archive", "vendors", False),
    _r("GET", "/v3/bills", "list", "bills"),
    _r("POST", "/v3/bills", "bill_create"),
    _r("POST", "/v3/bills/bulk", "bill_bulk"),
    _r("GET", "/v3/bills/{id}", "get", "bills"),
    _r("PATCH", "/v3/bills/{id}", "bill_update", False),
    _r("PUT", "/v3/bills/{id}", "bill_update", True),
    _r("POST", "/v3/bills/{id}/archive", "archive", "bills", True),
    _r("POST", "/v3/bills/{id}/restore", "archive", "bills", False),
    _r("GET", "/v3/classifications/chart-of-accounts", "list", "chart-of-accounts"),
    _r("POST", "/v3/classifications/chart-of-accounts", "class_create", "chart-of-accounts"),
    _r("GET", "/v3/classifications/chart-of-accounts/{id}", "get", "chart-of-accounts"),
    _r("PATCH", "/v3/classifications/chart-of-accounts/{id}", "class_patch", "chart-of-accounts"),
    _r("POST", "/v3/classifications/chart-of-accounts/{id}/archive", "archive", "chart-of-accounts", True),
    _r("POST", "/v3/classifications/chart-of-accounts/{id}/restore", "archive", "chart-of-accounts", False),
    _r("GET", "/v3/classifications/departments", "list", "departments"),
    _r("POST", "/v3/classifications/departments", "class_create", "departments"),
    _r("GET", "/v3/classifications/departments/{id}", "get", "departments"),
    _r("PATCH", "/v3/classifications/departments/{id}", "class_patch", "departments"),
    _r("POST", "/v3/classifications/departments/{id}/archive", "archive", "departments", True),
    _r("POST", "/v3/classifications/departments/{id}/restore", "archive", "departments", False),
    *[route for kind in ("accounting-classes", "locations", "jobs") for route in (
        _r("GET", f"/v3/classifications/{kind}", "list", kind),
        _r("POST", f"/v3/classifications/{kind}", "class_create", kind),
        _r("GET", f"/v3/classifications/{kind}/{{id}}", "get", kind),
        _r("PATCH", f"/v3/classifications/{kind}/{{id}}", "class_patch", kind),
        _r("POST", f"/v3/classifications/{kind}/{{id}}/archive", "archive", kind, True),
        _r("POST", f"/v3/classifications/{kind}/{{id}}/restore", "archive", kind, False),
    )],
    _r("GET", "/v3/vendor-credits", "credit_list"),
    _r("POST", "/v3/vendor-credits", "credit_create"),
    _r("POST", "/v3/vendor-credits/bulk", "credit_bulk"),
    _r("GET", "/v3/vendor-credits/{id}", "credit_get"),
    _r("POST", "/v3/vendor-credits/{id}/archive", "credit_archive"),
    _r("POST", "/v3/documents/bills/{id}", "document_upload"),
    _r("GET", "/v3/documents/bills/{id}", "document_list"),
    _r("GET", "/v3/documents/upload-status", "document_status"),
    _r("GET", "/v3/documents/{id}", "document_get"),
    _r("GET", "/v3/payments", "list", "payments"),
    _r("POST", "/v3/payments", "payment_create"),
    _r("GET", "/v3/payments/{id}", "get", "payments"),
    _r("POST", "/v3/payments/{id}/void", "payment_void"),
    _r("POST", "/v3/payments/{id}/cancel", "payment_cancel"),
]

EVENT_ROUTES = [
    _r("GET", "/v3/events/catalog", "event_catalog"),
    _r("GET", "/v3/subscriptions", "sub_list"),
    _r("POST", "/v3/subscriptions", "sub_create", idem=True),
    _r("GET", "/v3/subscriptions/{id}", "sub_get"),
    _r("PATCH", "/v3/subscriptions/{id}", "sub_update", False),
    _r("PUT", "/v3/subscriptions/{id}", "sub_update", True),
    _r("DELETE", "/v3/subscriptions/{id}", "sub_delete"),
    _r("POST", "/v3/subscriptions/{id}/security_key", "sub_rotate", idem=True),
    _r("POST", "/v3/subscriptions/{id}/test", "sub_test"),
    _r("GET", "/v3/events/subscription/{id}", "event_list"),
    _r("POST", "/v3/events/subscription/{id}/event/{id}", "event_resend"),
]


def _compile(routes):
    compiled = []
    for route in routes:
        pattern = "^" + re.escape(route.template).replace(re.escape("{id}"), "([^/]+)") + "$"
        compiled.append((re.compile(pattern), route))
    return compiled


_COMPILED = {"main": _compile(MAIN_ROUTES), "events": _compile(EVENT_ROUTES)}

KNOBS = (
    "latency", "error_rate", "concurrency_limit", "rate_limit_status", "hourly_limit", "login_hourly_limit",
    "session_idle_seconds", "webhook_sync", "webhook_retry_delays", "webhook_duplicate_rate", "webhook_timeout",
    "webhook_bill_updated_partial", "emit_bill_updated_on_payment", "allow_http_localhost", "max_vendors_bulk",
    "max_bills_bulk", "require_vendor_address", "untrusted_session",
)
