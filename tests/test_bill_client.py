"""BILL v3 client: sessions, re-login, BDC_1322 backoff, BDC_1144 stop, paging, errors (unit tests with `responses`)."""

import contextlib

import pytest
import responses

from connector.clients import bill as bill_module
from connector.clients.bill import BillClient, HourlyBlock
from connector.clients.errors import BillError, BillHourlyLimit, BillLoginFailed, BillRateLimited
from connector.sessions import MemorySessionStore

BASE = "https://gateway.stage.bill.com/connect"


class CountingLimiter:
    def __init__(self):
        self.in_flight = 0
        self.max_seen = 0

    @contextlib.contextmanager
    def slot(self, key, limit, **kw):
        self.in_flight += 1
        self.max_seen = max(self.max_seen, self.in_flight)
        try:
            yield "token"
        finally:
            self.in_flight -= 1


def client(store=None, **kw):
    return BillClient(
        BASE, "ap@example.test", "pw-secret", "008ORG", "dev-key-secret",
        session_store=store or MemorySessionStore(), limiter=CountingLimiter(), **kw,
    )


def err(code, message, status):
    return {"json": [{"timestamp": "2026-11-24T00:00:00.000+00:00", "code": code, "severity": "ERROR",
                      "category": "DOWNSTREAM", "message": message}], "status": status}


def add_login(session="sid-1"):
    responses.add(responses.POST, f"{BASE}/v3/login",
                  json={"organizationId": "008ORG", "sessionId": session, "trusted": False, "userId": "006U"})


@pytest.fixture
def no_sleep(monkeypatch):
    slept = []
    monkeypatch.setattr(bill_module.time, "sleep", slept.append)
    return slept


@responses.activate
def test_one_login_many_calls_with_devkey_and_session_headers():
    add_login()
    responses.add(responses.GET, f"{BASE}/v3/vendors/009A", json={"id": "009A"})
    bill = client()
    for _ in range(4):
        bill.get("/v3/vendors/009A")
    assert sum(c.request.url.endswith("/v3/login") for c in responses.calls) == 1
    headers = responses.calls[-1].request.headers
    assert headers["devKey"] == "dev-key-secret" and headers["sessionId"] == "sid-1"
    body = responses.calls[0].request.body
    assert b'"organizationId": "008ORG"' in body and b'"devKey": "dev-key-secret"' in body


@pytest.mark.parametrize("status", [401, 400])
@responses.activate
def test_invalid_session_relogs_once_and_retries(status):
    add_login("old")
    add_login("new")
    responses.add(responses.POST, f"{BASE}/v3/bills", **err("BDC_1109", "Session is invalid.  Please log in.", status))
    responses.add(responses.POST, f"{BASE}/v3/bills", json={"id": "00nX"}, status=201)
    assert client().post("/v3/bills", {"vendorId": "009"}) == {"id": "00nX"}
    assert responses.calls[-1].request.headers["sessionId"] == "new"


@responses.activate
def test_concurrency_rejections_back_off_with_jitter_then_succeed(no_sleep):
    add_login()
    for _ in range(3):
        responses.add(responses.GET, f"{BASE}/v3/bills",
                      **err("BDC_1322", "Max number of concurrent requests per organization reached.", 429))
    responses.add(responses.GET, f"{BASE}/v3/bills", json={"results": []})
    assert client().get("/v3/bills") == {"results": []}
    assert len(no_sleep) == 3
    for n, delay in enumerate(no_sleep):
        ceiling = BillClient.backoff_initial * 2**n
        assert ceiling / 2 <= delay <= ceiling


@responses.activate
def test_concurrency_rejections_give_up_eventually(no_sleep):
    add_login()
    responses.add(responses.GET, f"{BASE}/v3/bills", **err("BDC_1322", "Max number of concurrent requests", 400))
    with pytest.raises(BillRateLimited) as info:
        client().get("/v3/bills")
    assert info.value.code == "BDC_1322" and not info.value.permanent
    assert len(no_sleep) == BillClient.max_rate_limit_retries


@pytest.mark.django_db
@responses.activate
def test_hourly_cap_stops_all_calls_until_the_hour_turns():
    add_login()
    responses.add(responses.GET, f"{BASE}/v3/bills",
                  **err("BDC_1144", "Max number of allowed requests per hour reached: 20000.", 429))
    first = client(hourly_block=HourlyBlock("dev-key-secret"))
    with pytest.raises(BillHourlyLimit) as info:
        first.get("/v3/bills")
    assert info.value.until.minute == 0
    calls_before = len(responses.calls)
    # Another client with the same developer key (another worker, another tenant) does not even try.
    with pytest.raises(BillHourlyLimit, match="calls resume at"):
        client(hourly_block=HourlyBlock("dev-key-secret")).get("/v3/vendors")
    assert len(responses.calls) == calls_before


@pytest.mark.parametrize("code,words", [("BDC_1101", "wrong BILL user name or password"),
                                        ("BDC_1102", "developer key is not valid")])
@responses.activate
def test_login_failures_say_what_is_wrong(code, words):
    responses.add(responses.POST, f"{BASE}/v3/login", **err(code, "Invalid credentials", 400))
    with pytest.raises(BillLoginFailed, match=words):
        client().ping()


@responses.activate
def test_errors_carry_bill_code_and_message():
    add_login()
    responses.add(responses.POST, f"{BASE}/v3/bills", **err("BDC_1234", "Invalid vendor id 009X", 400))
    with pytest.raises(BillError) as info:
        client().post("/v3/bills", {})
    assert (info.value.code, info.value.message, info.value.status) == ("BDC_1234", "Invalid vendor id 009X", 400)
    assert info.value.permanent


@responses.activate
def test_list_follows_next_page_until_absent():
    add_login()
    responses.add(responses.GET, f"{BASE}/v3/vendors", json={"results": [{"id": 1}, {"id": 2}], "nextPage": "p2"},
                  match=[responses.matchers.query_param_matcher({"max": "2", "filters": 'archived:eq:false'})])
    responses.add(responses.GET, f"{BASE}/v3/vendors", json={"results": [], "nextPage": "p3"},
                  match=[responses.matchers.query_param_matcher(
                      {"max": "2", "filters": "archived:eq:false", "page": "p2"})])
    responses.add(responses.GET, f"{BASE}/v3/vendors", json={"results": [{"id": 3}]},
                  match=[responses.matchers.query_param_matcher(
                      {"max": "2", "filters": "archived:eq:false", "page": "p3"})])
    ids = [v["id"] for v in client().iterate("/v3/vendors", filters=["archived:eq:false"], page_size=2)]
    assert ids == [1, 2, 3]


@responses.activate
def test_webhook_service_calls_go_to_the_events_base():
    add_login()
    responses.add(responses.GET, "https://gateway.stage.bill.com/connect-events/v3/subscriptions", json={"results": []})
    assert client().get("/v3/subscriptions", events=True) == {"results": []}


@responses.activate
def test_every_call_goes_through_the_limiter():
    add_login()
    responses.add(responses.GET, f"{BASE}/v3/vendors/1", json={})
    bill = client()
    bill.get("/v3/vendors/1")
    assert bill.limiter.max_seen == 1 and bill.limiter.in_flight == 0


@responses.activate
def test_a_busy_login_is_retried_not_reported_as_wrong_credentials(no_sleep):
    responses.add(responses.POST, f"{BASE}/v3/login",
                  **err("BDC_1322", "Max number of concurrent requests per organization reached.", 400))
    add_login()
    responses.add(responses.GET, f"{BASE}/v3/login/session", json={})
    assert "logged in" in client().ping()
    assert len(no_sleep) == 1


@responses.activate
def test_a_bare_429_is_treated_as_busy(no_sleep):
    add_login()
    responses.add(responses.GET, f"{BASE}/v3/bills", body="Too Many Requests", status=429)
    responses.add(responses.GET, f"{BASE}/v3/bills", json={"results": []})
    assert client().get("/v3/bills") == {"results": []}
    assert len(no_sleep) == 1


@pytest.mark.parametrize("base,events", [
    ("https://gateway.stage.bill.com/connect", "https://gateway.stage.bill.com/connect-events"),
    ("https://gateway.prod.bill.com/connect/", "https://gateway.prod.bill.com/connect-events"),
    ("http://127.0.0.1:9000", "http://127.0.0.1:9000"),  # a server that serves both under one base
    ("http://connect", "http://connect"),
])
def test_webhook_service_base_defaults_from_the_api_base(base, events):
    from connector.clients.bill import events_base_url

    assert events_base_url(base) == events


@responses.activate
def test_ping_works_without_the_session_check_endpoint():
    add_login()
    responses.add(responses.GET, f"{BASE}/v3/login/session", **err("BDC_1121", "API not supported", 404))
    responses.add(responses.GET, f"{BASE}/v3/vendors", json={"results": []})
    assert "logged in to organization 008ORG" in client().ping()
