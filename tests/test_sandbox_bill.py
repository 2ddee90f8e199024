"""Tests of the BILL v3 simulator (connector/sandbox/bill/), driven over real HTTP like the connector does."""

import base64
import hashlib
import hmac
import json
import threading
import uuid
from decimal import Decimal

import pytest
import requests
from werkzeug.test import Client as WsgiClient
from werkzeug.wrappers import Request, Response

from connector.sandbox import catalog
from connector.sandbox.bill import BillSimulator, dumps, make_app, sign
from connector.sandbox.server import serve

HOUR_START = 1_789_999_200  # an exact clock hour (2026-09-21 14:00 UTC)
VENDOR = "00901SBXVEND0000001"  # Contoso Facilities
VENDOR2 = "00901SBXVEND0000002"  # Acme Office Supply Inc
COA_RENT = "0ca01SBX00000006200"
COA_ARCHIVED = "0ca01SBX00000006800"  # Marketing, archived in the catalog
DEPT_ADMIN = "0de01SBX0000000ADMIN"


class FakeClock:
    def __init__(self, t=HOUR_START + 600):
        self.t = t

    def __call__(self):
        return self.t

    def advance(self, seconds):
        self.t += seconds


class Client:
    """Minimal BILL client: one session, devKey + sessionId headers."""

    def __init__(self, url):
        self.url = url
        self.http = requests.Session()
        self.session_id = None

    def login(self, **overrides):
        body = {"username": catalog.BILL_USER, "password": catalog.BILL_PASSWORD,
                "organizationId": catalog.BILL_ORG_ID, "devKey": catalog.BILL_DEV_KEY, **overrides}
        resp = self.http.post(self.url + "/connect/v3/login", json=body)
        if resp.status_code == 200:
            self.session_id = resp.json()["sessionId"]
        return resp

    def headers(self, extra=None):
        return {"devKey": catalog.BILL_DEV_KEY, "sessionId": self.session_id or "", **(extra or {})}

    def call(self, method, path, *, events=False, headers=None, **kw):
        base = "/connect-events" if events else "/connect"
        return self.http.request(method, self.url + base + path, headers=self.headers(headers), **kw)

    def get(self, path, **kw):
        return self.call("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.call("POST", path, json=body, **kw)


class Receiver:
    """Webhook receiver WSGI app recording raw bodies and headers; answers `status`."""

    def __init__(self, status=200):
        self.status = status
        self.calls = []

    def __call__(self, environ, start_response):
        req = Request(environ)
        self.calls.append(({k.lower(): v for k, v in req.headers.items()}, req.get_data()))
        return Response(b"ok", status=self.status)(environ, start_response)

    def events(self):
        return [json.loads(body) for _, body in self.calls]


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def sim(clock):
    s = BillSimulator(clock=clock)
    # Most tests here are about paging, limits and webhooks and create bare vendors; the address BILL requires on
    # create is covered by test_vendor_create_requires_an_address_listing_every_missing_part (strict default).
    s.require_vendor_address = False
    s.webhook_sync = True
    s.webhook_retry_delays = (0.01, 0.01, 0.01, 0.01)
    yield s
    s.close()


class Slot:
    """WSGI app delegating to whatever app the current test put in; lets one server live for the module
    (stopping a werkzeug server costs up to 0.5 s of its poll interval)."""

    app = None

    def __call__(self, environ, start_response):
        return self.app(environ, start_response)


@pytest.fixture(scope="module")
def sim_slot():
    slot = Slot()
    srv = serve(slot)
    yield slot, srv
    srv.stop()


@pytest.fixture(scope="module")
def receiver_slot():
    slot = Slot()
    srv = serve(slot)
    yield slot, srv
    srv.stop()


@pytest.fixture
def server(sim, sim_slot):
    slot, srv = sim_slot
    slot.app = sim
    yield srv
    slot.app = None


@pytest.fixture
def client(server):
    c = Client(server.url)
    assert c.login().status_code == 200
    return c


@pytest.fixture
def receiver(receiver_slot):
    slot, srv = receiver_slot
    slot.app = rec = Receiver()
    rec.url = srv.url + "/bill/webhook"
    return rec


def bill_body(vendor=VENDOR, number="INV-1", amounts=("149.00", "79.99"), **extra):
    return {"vendorId": vendor, "dueDate": "2026-12-31",
            "invoice": {"invoiceNumber": number, "invoiceDate": "2026-12-15"},
            "billLineItems": [{"amount": Decimal(a), "description": f"line {i}"} for i, a in enumerate(amounts)],
            **extra}


def post_bill(client, **kw):
    resp = client.post("/v3/bills", json.loads(dumps(bill_body(**kw))))
    assert resp.status_code == 201, resp.text
    return resp.json()


def subscribe(client, url, events=("bill.created", "bill.updated", "payment.updated"), key=None):
    body = {"name": "test", "status": {"enabled": True}, "notificationUrl": url,
            "events": [{"type": t, "version": "1"} for t in events]}
    return client.post("/v3/subscriptions", body, events=True,
                       headers={"X-Idempotent-Key": key or str(uuid.uuid4())})


def assert_error(resp, status, code):
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert isinstance(body, list) and len(body) == 1
    assert body[0]["code"] == code
    assert set(body[0]) >= {"timestamp", "code", "severity", "category", "message"}
    assert body[0]["severity"] == "ERROR"
    return body[0]


# ------------------------------------------------------------------------------------------------ auth


def test_login_ok(server):
    resp = Client(server.url).login()
    assert resp.status_code == 200
    body = resp.json()
    assert body["organizationId"] == catalog.BILL_ORG_ID
    assert body["trusted"] is False
    assert body["sessionId"] and body["userId"].startswith("006")


def test_login_bad_password(server):
    err = assert_error(Client(server.url).login(password="nope"), 400, "BDC_1101")
    assert "password" in err["message"]


def test_login_bad_dev_key(server):
    assert_error(Client(server.url).login(devKey="other-key"), 400, "BDC_1102")


def test_login_unknown_org(server):
    err = assert_error(Client(server.url).login(organizationId="00801NOPE"), 400, "BDC_1123")
    assert "organization" in err["message"]


def test_bad_session_is_401_bdc_1109(server, client):
    client.session_id = "not-a-session"
    err = assert_error(client.get("/v3/vendors"), 401, "BDC_1109")
    assert err["message"] == "Session is invalid.  Please log in."
    assert err["category"] == "DOWNSTREAM"
    assert err["timestamp"].endswith("+00:00")


def test_missing_dev_key_is_rejected(server, client):
    resp = requests.get(server.url + "/connect/v3/vendors", headers={"sessionId": client.session_id})
    assert_error(resp, 401, "BDC_1102")


def test_session_idle_expiry_slides(sim, client, clock):
    clock.advance(30 * 60)
    assert client.get("/v3/vendors").status_code == 200  # resets the idle timer
    clock.advance(30 * 60)
    assert client.get("/v3/vendors").status_code == 200
    clock.advance(35 * 60 + 1)
    assert_error(client.get("/v3/vendors"), 401, "BDC_1109")


def test_session_info_and_logout(client):
    info = client.get("/v3/login/session").json()
    assert info["organizationId"] == catalog.BILL_ORG_ID
    resp = client.post("/v3/logout")
    assert resp.status_code == 200 and resp.content == b""
    assert_error(client.get("/v3/login/session"), 401, "BDC_1109")


def test_expire_all_sessions(sim, client):
    sim.expire_all_sessions()
    assert_error(client.get("/v3/vendors"), 401, "BDC_1109")
    assert client.login().status_code == 200
    assert client.get("/v3/vendors").status_code == 200


def test_unknown_path_is_404_bdc_1121(client):
    assert_error(client.get("/v3/nothing-here"), 404, "BDC_1121")
    assert_error(client.get("/v3/bills/00nNOPE"), 404, "BDC_1205")


def test_add_org_isolates_data(sim, server):
    sim.add_org("00802OTHERORG000001", "other@example.test", "pw", "other-key")
    other = Client(server.url)
    resp = other.login(username="other@example.test", password="pw", organizationId="00802OTHERORG000001",
                       devKey="other-key")
    assert resp.status_code == 200
    resp = other.http.get(server.url + "/connect/v3/vendors",
                          headers={"devKey": "other-key", "sessionId": other.session_id})
    assert resp.json()["results"] == []


# ------------------------------------------------------------------------------------------------ limits


def test_concurrency_limit(sim, server, client):
    sim.latency = 0.2
    barrier = threading.Barrier(8)
    results = []

    def worker():
        barrier.wait()
        resp = requests.get(server.url + "/connect/v3/vendors", headers=client.headers())
        results.append(resp)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ok = [r for r in results if r.status_code == 200]
    rejected = [r for r in results if r.status_code != 200]
    assert len(ok) == 3
    for resp in rejected:
        err = assert_error(resp, 429, "BDC_1322")
        assert err["message"] == "Max number of concurrent requests per organization reached."
    assert sim.max_in_flight_seen[(catalog.BILL_DEV_KEY, catalog.BILL_ORG_ID)] == 3
    assert sim.rejected_concurrent == 5


def test_hourly_limit_then_next_hour(sim, client, clock):
    sim.hourly_limit = 5  # the login already used one
    sim.rate_limit_status = 400
    sim.session_idle_seconds = 10 * 3600
    for _ in range(4):
        assert client.get("/v3/vendors").status_code == 200
    err = assert_error(client.get("/v3/vendors"), 400, "BDC_1144")
    assert err["message"] == "Max number of allowed requests per hour reached: 5."
    clock.advance(3600)
    assert client.get("/v3/vendors").status_code == 200


def test_login_hourly_limit(sim, server):
    sim.login_hourly_limit = 2
    c = Client(server.url)
    assert c.login().status_code == 200
    assert c.login().status_code == 200
    assert_error(c.login(), 429, "BDC_1144")
    assert sim.login_count == 3


def test_error_rate_gives_500_without_executing(sim, client):
    sim.error_rate = 1.0
    assert_error(client.post("/v3/vendors", {"name": "Never"}), 500, "BDC_1001")
    sim.error_rate = 0.0
    assert not [v for v in sim.entities("vendors") if v["name"] == "Never"]


def test_fail_next_injects_error(sim, client):
    sim.fail_next("POST", "/v3/bills", 503, "BDC_1001", "System error occurred.")
    assert_error(client.post("/v3/bills", json.loads(dumps(bill_body()))), 503, "BDC_1001")
    assert sim.entities("bills") == []
    post_bill(client)


def test_lost_response_executes_but_drops_connection(sim, client):
    sim.lose_next_response("POST", "/v3/vendors")
    with pytest.raises(requests.ConnectionError):
        client.post("/v3/vendors", {"name": "Lost Response Co"})
    assert [v["name"] for v in sim.entities("vendors")].count("Lost Response Co") == 1
    assert client.get("/v3/vendors").status_code == 200  # the server carries on


def test_stats_counts_requests(sim, client):
    client.get("/v3/vendors")
    client.get(f"/v3/vendors/{VENDOR}")
    assert sim.requests_by_path["GET /v3/vendors"] == 1
    assert sim.requests_by_path["GET /v3/vendors/{id}"] == 1
    assert sim.requests_by_path["POST /v3/login"] == 1
    assert sim.request_count == 3 and sim.login_count == 1


# ------------------------------------------------------------------------------------------------ lists


def make_vendors(client, n, prefix="Paging Vendor"):
    for start in range(0, n, 20):
        batch = [{"name": f"{prefix} {i:03d}"} for i in range(start, min(n, start + 20))]
        assert client.post("/v3/vendors/bulk", batch).status_code == 201


def test_paging_default_20_exact_multiple_ends_with_empty_page(client):
    make_vendors(client, 36)  # + 4 seeded = 40 = 2 full pages
    first = client.get("/v3/vendors").json()
    assert len(first["results"]) == 20 and "nextPage" in first and "prevPage" not in first
    second = client.get("/v3/vendors", params={"page": first["nextPage"]}).json()
    assert len(second["results"]) == 20 and "nextPage" in second and "prevPage" in second
    third = client.get("/v3/vendors", params={"page": second["nextPage"]}).json()
    assert third["results"] == [] and "nextPage" not in third
    ids = [v["id"] for v in first["results"] + second["results"]]
    assert len(set(ids)) == 40


def test_paging_partial_last_page_has_no_next(client):
    make_vendors(client, 21)  # 25 in total
    page = client.get("/v3/vendors", params={"max": 10}).json()
    seen = list(page["results"])
    while "nextPage" in page:
        page = client.get("/v3/vendors", params={"max": 10, "page": page["nextPage"]}).json()
        seen += page["results"]
    assert len(seen) == 25
    assert len(page["results"]) == 5


@pytest.mark.parametrize("value", ["0", "101", "abc", "-1"])
def test_max_out_of_range_is_400(client, value):
    assert_error(client.get("/v3/vendors", params={"max": value}), 400, "BDC_1129")


def test_max_100_ok(client):
    assert client.get("/v3/bills", params={"max": 100}).status_code == 200


def test_page_token_of_other_query_rejected(client):
    make_vendors(client, 20)
    token = client.get("/v3/vendors").json()["nextPage"]
    assert_error(client.get("/v3/vendors", params={"page": token, "filters": 'name:sw:"P"'}), 400, "BDC_1129")


def names(resp):
    assert resp.status_code == 200, resp.text
    return sorted(v["name"] for v in resp.json()["results"])


def test_filters_eq_sw_in_nested(client):
    client.post("/v3/vendors", {"name": "Person Vendor", "accountType": "PERSON"})
    assert names(client.get("/v3/vendors", params={"filters": 'name:eq:"Globex Services"'})) == ["Globex Services"] * 2
    assert names(client.get("/v3/vendors", params={"filters": "name:sw:Acme"})) == ["Acme Office Supply Inc"]
    in_filter = {"filters": 'accountType:in:"PERSON,NONE"'}
    assert names(client.get("/v3/vendors", params=in_filter)) == ["Person Vendor"]
    nin = names(client.get("/v3/vendors", params={"filters": 'accountType:nin:"BUSINESS"'}))
    assert nin == ["Person Vendor"]
    nested = {"filters": 'additionalInfo.taxId:eq:"52-1000002"'}
    assert names(client.get("/v3/vendors", params=nested)) == ["Contoso Facilities"]
    both = {"filters": 'name:sw:"Globex",email:eq:"west@globex.example"'}
    assert [v["id"] for v in client.get("/v3/vendors", params=both).json()["results"]] == ["00901SBXVEND0000004"]
    archived = client.get("/v3/vendors", params={"filters": "archived:eq:false"}).json()["results"]
    assert len(archived) == 5


def test_filter_nested_invoice_number_and_ops(client):
    post_bill(client, number="A-1", amounts=("10.00",))
    post_bill(client, number="A-2", amounts=("20.00",))
    post_bill(client, vendor=VENDOR2, number="B-1", amounts=("30.00",))
    resp = client.get("/v3/bills", params={"filters": 'invoice.invoiceNumber:eq:"A-2"'}).json()
    assert [b["amount"] for b in resp["results"]] == [20.0]
    resp = client.get("/v3/bills", params={"filters": "amount:gte:20,vendorId:eq:" + VENDOR}).json()
    assert [b["invoice"]["invoiceNumber"] for b in resp["results"]] == ["A-2"]
    resp = client.get("/v3/bills", params={"filters": "amount:lt:20"}).json()
    assert [b["invoice"]["invoiceNumber"] for b in resp["results"]] == ["A-1"]


def test_filter_updated_time_gte_on_payments(sim, client, clock):
    b1 = post_bill(client, amounts=("10.00",))
    b2 = post_bill(client, amounts=("20.00",))
    sim.pay_bills([(b1["id"], Decimal("10.00"))])
    clock.advance(120)
    cutoff = "2026-09-21T14:11:00.000Z"
    p2 = sim.pay_bills([(b2["id"], Decimal("20.00"))])
    resp = client.get("/v3/payments", params={"filters": f'updatedTime:gte:"{cutoff}"'}).json()
    assert [p["id"] for p in resp["results"]] == [p2["id"]]
    resp = client.get("/v3/payments", params={"filters": 'status:eq:"PAID"'}).json()
    assert len(resp["results"]) == 2


def test_sort(client):
    for number, amount in (("S-1", "30.00"), ("S-2", "10.00"), ("S-3", "20.00")):
        post_bill(client, number=number, amounts=(amount,))
    desc = client.get("/v3/bills", params={"sort": "amount:desc"}).json()["results"]
    assert [b["amount"] for b in desc] == [30.0, 20.0, 10.0]
    by_number = client.get("/v3/bills", params={"sort": "invoice.invoiceNumber:asc"}).json()["results"]
    assert [b["invoice"]["invoiceNumber"] for b in by_number] == ["S-1", "S-2", "S-3"]
    default = client.get("/v3/bills").json()["results"]
    assert [b["invoice"]["invoiceNumber"] for b in default] == ["S-1", "S-2", "S-3"]  # creation order


def test_bad_filter_operator(client):
    assert_error(client.get("/v3/vendors", params={"filters": "name:like:x"}), 400, "BDC_1131")
    assert_error(client.get("/v3/vendors", params={"filters": "name"}), 400, "BDC_1129")


# ------------------------------------------------------------------------------------------------ vendors


def test_vendor_create_and_get(client):
    resp = client.post("/v3/vendors", {
        "name": "Happy Music Supplies", "accountType": "BUSINESS", "email": "info@happy.example",
        "address": {"line1": "123 Main Street", "city": "San Jose", "stateOrProvince": "CA",
                    "zipOrPostalCode": "95002", "country": "US"},
        "additionalInfo": {"taxId": "12-3456789", "taxIdType": "EIN", "track1099": True},
        "paymentInformation": {"bankAccount": {"nameOnAccount": "HMS", "accountNumber": "111222333",
                                               "routingNumber": "074000010"}}})
    assert resp.status_code == 201, resp.text
    vendor = resp.json()
    assert vendor["id"].startswith("009") and len(vendor["id"]) == 20
    assert vendor["archived"] is False and vendor["billCurrency"] == "USD"
    assert vendor["address"]["countryName"] == "United States"
    assert vendor["paymentInformation"]["payByType"] == "ACH"
    assert vendor["paymentInformation"]["bankAccount"]["accountNumber"].endswith("2333")
    assert vendor["createdTime"].endswith("+00:00")
    assert client.get(f"/v3/vendors/{vendor['id']}").json() == vendor


@pytest.mark.parametrize("body", [{}, {"name": ""}, {"name": "x" * 101}, {"name": "ok", "accountType": "ALIEN"},
                                  {"name": "ok", "email": "not-an-email"}])
def test_vendor_validation(client, body):
    assert client.post("/v3/vendors", body).status_code == 400


def test_vendor_bulk_limit_and_all_or_nothing(sim, client):
    assert_error(client.post("/v3/vendors/bulk", [{"name": f"V{i}"} for i in range(21)]), 400, "BDC_1119")
    before = len(sim.entities("vendors"))
    resp = client.post("/v3/vendors/bulk", [{"name": "Good One"}, {"name": ""}, {"name": "Good Two"}])
    assert resp.status_code == 400
    assert "[1]" in resp.json()[0]["message"]
    assert len(sim.entities("vendors")) == before
    resp = client.post("/v3/vendors/bulk", [{"name": f"V{i}"} for i in range(20)])
    assert resp.status_code == 201
    assert len(resp.json()["vendors"]) == 20


def test_vendor_patch_deep_merges(client):
    vendor = client.post("/v3/vendors", {"name": "Patchy", "address": {"line1": "1 A St", "city": "X",
                                                                        "country": "US"},
                                         "additionalInfo": {"taxId": "11-1111111", "taxIdType": "EIN"}}).json()
    resp = client.call("PATCH", f"/v3/vendors/{vendor['id']}",
                       json={"address": {"city": "Y"}, "additionalInfo": {"track1099": True}})
    assert resp.status_code == 200, resp.text
    patched = resp.json()
    assert patched["address"] == {"line1": "1 A St", "city": "Y", "country": "US", "countryName": "United States"}
    assert patched["additionalInfo"] == {"taxId": "11-1111111", "taxIdType": "EIN", "track1099": True}
    assert patched["name"] == "Patchy"


def test_vendor_archive_restore_and_bills(client):
    vendor = client.post("/v3/vendors", {"name": "Soon Archived"}).json()
    assert client.post(f"/v3/vendors/{vendor['id']}/archive").json()["archived"] is True
    assert client.post(f"/v3/vendors/{vendor['id']}/archive").json()["archived"] is True  # idempotent
    resp = client.post("/v3/bills", json.loads(dumps(bill_body(vendor=vendor["id"]))))
    assert resp.status_code == 400 and vendor["id"] in resp.json()[0]["message"]
    assert client.post(f"/v3/vendors/{vendor['id']}/restore").json()["archived"] is False
    post_bill(client, vendor=vendor["id"])


# ------------------------------------------------------------------------------------------------ bills


def test_bill_create_amount_is_line_sum(client):
    resp = client.post("/v3/bills", json.loads(dumps(bill_body())))
    assert resp.status_code == 201
    assert b'"amount":228.99' in resp.content and b'"paidAmount":0.00' in resp.content
    bill = resp.json()
    assert bill["id"].startswith("00n") and len(bill["id"]) == 20
    assert bill["vendorName"] == "Contoso Facilities"
    assert bill["dueAmount"] == 228.99 and bill["paymentStatus"] == "UNPAID"
    assert bill["approvalStatus"] == "UNASSIGNED"
    assert [li["amount"] for li in bill["billLineItems"]] == [149.0, 79.99]
    assert all(li["id"] for li in bill["billLineItems"])
    assert client.get(f"/v3/bills/{bill['id']}").json() == bill


@pytest.mark.parametrize("mutate, code", [
    (lambda b: b.pop("vendorId"), "BDC_1108"),
    (lambda b: b.update(vendorId="009NOPE"), "BDC_1119"),
    (lambda b: b.update(dueDate="31/12/2026"), "BDC_1119"),
    (lambda b: b["invoice"].pop("invoiceNumber"), "BDC_1108"),
    (lambda b: b["invoice"].update(invoiceDate="2026-02-30"), "BDC_1119"),
    (lambda b: b.update(billLineItems=[]), "BDC_1108"),
    (lambda b: b["billLineItems"][0].pop("amount"), "BDC_1108"),
    (lambda b: b["billLineItems"][0].update(amount="abc"), "BDC_1124"),
])
def test_bill_validation(client, mutate, code):
    body = json.loads(dumps(bill_body()))
    mutate(body)
    assert_error(client.post("/v3/bills", body), 400, code)


def test_line_amount_from_quantity_and_price(client):
    body = json.loads(dumps(bill_body()))
    body["billLineItems"] = [{"quantity": 3, "price": 2.5}]
    assert client.post("/v3/bills", body).json()["amount"] == 7.5


def test_bill_bulk_limit_all_or_nothing_and_mixed_vendors(sim, client):
    body = [json.loads(dumps(bill_body(number=f"BULK-{i}"))) for i in range(101)]
    assert_error(client.post("/v3/bills/bulk", body), 400, "BDC_1119")
    bad = [json.loads(dumps(bill_body(number="OK-1"))), json.loads(dumps(bill_body(number="OK-2")))]
    bad[1]["billLineItems"][0]["classifications"] = {"chartOfAccountId": "0caNOPE"}
    resp = client.post("/v3/bills/bulk", bad)
    assert resp.status_code == 400 and "0caNOPE" in resp.json()[0]["message"]
    assert sim.entities("bills") == []
    mixed = [json.loads(dumps(bill_body(vendor=v, number=f"M-{i}"))) for i, v in enumerate([VENDOR, VENDOR2] * 50)]
    resp = client.post("/v3/bills/bulk", mixed)
    assert resp.status_code == 201
    assert len(resp.json()) == 100 and {b["vendorId"] for b in resp.json()} == {VENDOR, VENDOR2}


def test_duplicate_invoice_numbers_accepted(client):
    first, second = post_bill(client, number="DUP"), post_bill(client, number="DUP")
    assert first["id"] != second["id"]


def test_classification_archived_or_unknown_rejected(client):
    body = json.loads(dumps(bill_body()))
    body["billLineItems"][0]["classifications"] = {"chartOfAccountId": COA_ARCHIVED}
    err = assert_error(client.post("/v3/bills", body), 400, "BDC_1119")
    assert COA_ARCHIVED in err["message"] and "archived" in err["message"]
    body["billLineItems"][0]["classifications"] = {"chartOfAccountId": COA_RENT, "departmentId": "0deNOPE"}
    assert "0deNOPE" in assert_error(client.post("/v3/bills", body), 400, "BDC_1119")["message"]
    body["billLineItems"][0]["classifications"] = {"chartOfAccountId": COA_RENT, "departmentId": DEPT_ADMIN}
    assert client.post("/v3/bills", body).status_code == 201


def test_bill_patch_line_item_by_id(client):
    bill = post_bill(client)
    first, second = bill["billLineItems"]
    resp = client.call("PATCH", f"/v3/bills/{bill['id']}", json={
        "description": "patched", "invoice": {"invoiceNumber": "INV-1b"},
        "billLineItems": [{"id": second["id"], "amount": 20}, {"amount": 1, "description": "new"}]})
    assert resp.status_code == 200, resp.text
    patched = resp.json()
    assert patched["description"] == "patched"
    assert patched["invoice"] == {"invoiceNumber": "INV-1b", "invoiceDate": "2026-12-15"}
    items = patched["billLineItems"]
    assert [li["id"] for li in items[:2]] == [first["id"], second["id"]]
    assert [li["amount"] for li in items] == [149.0, 20.0, 1.0]
    assert items[1]["description"] == "line 1"  # untouched fields of a modified item stay
    assert patched["amount"] == 170.0 and patched["dueAmount"] == 170.0
    resp = client.call("PATCH", f"/v3/bills/{bill['id']}", json={"billLineItems": [{"id": "bliNOPE", "amount": 1}]})
    assert resp.status_code == 400


def test_bill_put_replaces_line_items(client):
    bill = post_bill(client)
    first, _second = bill["billLineItems"]
    body = json.loads(dumps(bill_body(number="PUT-1")))
    body["billLineItems"] = [{"id": first["id"], "amount": 100}, {"amount": 5, "description": "added"}]
    resp = client.call("PUT", f"/v3/bills/{bill['id']}", json=body)
    assert resp.status_code == 200, resp.text
    items = resp.json()["billLineItems"]
    assert len(items) == 2 and items[0]["id"] == first["id"] and items[1]["id"] not in {li["id"] for li in
                                                                                        bill["billLineItems"]}
    assert resp.json()["amount"] == 105.0
    assert "description" not in items[0]  # PUT replaces the whole item
    missing = {k: v for k, v in body.items() if k != "dueDate"}
    assert client.call("PUT", f"/v3/bills/{bill['id']}", json=missing).status_code == 400


def test_bill_archive_restore_idempotent(client):
    bill = post_bill(client)
    archived = client.post(f"/v3/bills/{bill['id']}/archive").json()
    assert archived["archived"] is True
    again = client.post(f"/v3/bills/{bill['id']}/archive").json()
    assert again["updatedTime"] == archived["updatedTime"]
    assert client.call("PATCH", f"/v3/bills/{bill['id']}", json={"description": "x"}).status_code == 400
    assert client.post(f"/v3/bills/{bill['id']}/restore").json()["archived"] is False


# ------------------------------------------------------------------------------------------------ classifications


def test_classifications_seeded_and_managed(client):
    coa = client.get("/v3/classifications/chart-of-accounts", params={"max": 100}).json()["results"]
    assert len(coa) == len(catalog.BILL_ACCOUNTS)
    rent = next(a for a in coa if a["id"] == COA_RENT)
    assert rent["account"] == {"type": "EXPENSE", "number": "6200"} and rent["archived"] is False
    active = client.get("/v3/classifications/chart-of-accounts", params={"filters": "archived:eq:true"}).json()
    assert [a["id"] for a in active["results"]] == [COA_ARCHIVED]
    deps = client.get("/v3/classifications/departments").json()["results"]
    assert {d["shortName"] for d in deps} >= {"ADM", "SLS"}
    new = client.post("/v3/classifications/departments", {"name": "IT", "shortName": "IT"})
    assert new.status_code == 201 and new.json()["id"].startswith("0de")
    new_id = new.json()["id"]
    assert client.post(f"/v3/classifications/departments/{new_id}/archive").json()["archived"] is True
    body = json.loads(dumps(bill_body()))
    body["billLineItems"][0]["classifications"] = {"departmentId": new_id}
    assert client.post("/v3/bills", body).status_code == 400
    assert client.post("/v3/classifications/chart-of-accounts", {"name": "Insurance",
                                                                  "account": {"number": "6900"}}).status_code == 201


# ------------------------------------------------------------------------------------------------ payments


def get_bill(client, bill_id):
    return client.get(f"/v3/bills/{bill_id}").json()


def test_pay_bills_full_partial_multi(sim, client):
    b1 = post_bill(client, amounts=("100.00",))
    b2 = post_bill(client, amounts=("50.00",))
    payment = sim.pay_bills([(b1["id"], Decimal("100.00")), (b2["id"], Decimal("20.00"))], process_date="2026-12-20")
    assert payment["id"].startswith("stp") and payment["amount"] == Decimal("120.00")
    assert payment["status"] == "PAID" and payment["singleStatus"] == "PROCESSED"
    assert [bp["id"][:3] for bp in payment["billPayments"]] == ["blp", "blp"]
    full, partial = get_bill(client, b1["id"]), get_bill(client, b2["id"])
    assert (full["paidAmount"], full["dueAmount"], full["paymentStatus"]) == (100.0, 0.0, "PAID")
    assert (partial["paidAmount"], partial["dueAmount"], partial["paymentStatus"]) == (20.0, 30.0, "PARTIAL")
    api_payment = client.get(f"/v3/payments/{payment['id']}").json()
    assert api_payment["billPayments"] == [{"id": payment["billPayments"][0]["id"], "billId": b1["id"],
                                            "amount": 100.0, "vendorCredits": []},
                                           {"id": payment["billPayments"][1]["id"], "billId": b2["id"],
                                            "amount": 20.0, "vendorCredits": []}]
    assert api_payment["processDate"] == "2026-12-20" and api_payment["vendorId"] == VENDOR
    sim.pay_bills([(b2["id"], "30.00")])
    assert get_bill(client, b2["id"])["paymentStatus"] == "PAID"


def test_pay_bills_rejects_mixed_vendors_and_overpayment(sim, client):
    b1 = post_bill(client, amounts=("10.00",))
    b2 = post_bill(client, vendor=VENDOR2, amounts=("10.00",))
    with pytest.raises(ValueError, match="same vendor"):
        sim.pay_bills([(b1["id"], Decimal("10")), (b2["id"], Decimal("10"))])
    with pytest.raises(ValueError):
        sim.pay_bills([(b1["id"], Decimal("10.01"))])
    assert sim.entities("payments") == []
    assert get_bill(client, b1["id"])["paidAmount"] == 0.0


def test_paid_or_partial_bill_cannot_be_edited(sim, client):
    bill = post_bill(client, amounts=("100.00",))
    sim.pay_bills([(bill["id"], Decimal("40.00"))])
    err = assert_error(client.call("PATCH", f"/v3/bills/{bill['id']}", json={"description": "x"}), 400, "BDC_1119")
    assert "PARTIAL" in err["message"]
    assert client.call("PUT", f"/v3/bills/{bill['id']}", json=json.loads(dumps(bill_body()))).status_code == 400
    assert client.post(f"/v3/bills/{bill['id']}/archive").status_code == 400


def test_void_payment_reverses(sim, client):
    bill = post_bill(client, amounts=("100.00",))
    payment = sim.pay_bills([(bill["id"], Decimal("100.00"))])
    voided = sim.void_payment(payment["id"])
    assert voided["status"] == "VOID" and voided["singleStatus"] == "VOIDED"
    after = get_bill(client, bill["id"])
    assert (after["paidAmount"], after["dueAmount"], after["paymentStatus"]) == (0.0, 100.0, "UNPAID")
    with pytest.raises(ValueError):
        sim.void_payment(payment["id"])
    assert client.call("PATCH", f"/v3/bills/{bill['id']}", json={"description": "editable again"}).status_code == 200


def test_fail_payment(sim, client, receiver):
    subscribe(client, receiver.url, events=("payment.failed",))
    bill = post_bill(client, amounts=("10.00",))
    payment = sim.pay_bills([(bill["id"], Decimal("10.00"))])
    failed = sim.fail_payment(payment["id"])
    assert failed["status"] == "FAILED"
    assert get_bill(client, bill["id"])["paymentStatus"] == "UNPAID"
    [event] = receiver.events()
    assert event["metadata"]["eventType"] == "payment.failed" and event["payment"]["errors"]


def test_api_payment_schedule_cancel_and_void(sim, client):
    bill = post_bill(client, amounts=("80.00",))
    resp = client.post("/v3/payments", {"vendorId": VENDOR, "processDate": "2026-12-24",
                                        "billPayments": [{"billId": bill["id"], "amount": 30}]})
    assert resp.status_code == 201, resp.text
    payment = resp.json()
    assert payment["status"] == "SCHEDULED"
    scheduled = get_bill(client, bill["id"])
    assert (scheduled["scheduledAmount"], scheduled["paymentStatus"]) == (30.0, "SCHEDULED")
    assert client.post(f"/v3/payments/{payment['id']}/cancel").json()["status"] == "CANCELLED"
    assert get_bill(client, bill["id"])["paymentStatus"] == "UNPAID"
    second = client.post("/v3/payments", {"billId": bill["id"], "amount": 80}).json()
    sim.settle_payment(second["id"])
    assert get_bill(client, bill["id"])["paymentStatus"] == "PAID"
    assert client.post(f"/v3/payments/{second['id']}/cancel").status_code == 400
    assert client.post(f"/v3/payments/{second['id']}/void").json()["singleStatus"] == "VOIDED"
    assert get_bill(client, bill["id"])["dueAmount"] == 80.0


# ------------------------------------------------------------------------------------------------ webhooks


def test_signature_matches_sheet_vectors():
    assert sign(b"The quick brown fox jumps over the lazy dog", "key") == \
        "97yD9DBThCSxMpjmqm+xQ+9NWaFJRhdZl0edvC0aPNg="
    body = (b'{"metadata":{"eventId":"625947c4-8e6b-48f0-ae72-ea9c9375ec27","subscriptionId":'
            b'"f6d06930-e3e2-4509-be37-4dbda29efc6i","organizationId":"00802DEVKGROHKDIY4zyx","eventType":'
            b'"payment.updated","version":"1"},"payment":{"id":"stp01VTFIWRGOUMAVl39","billIds":'
            b'["00n02JZNIEYMNPY99iz9"],"status":"PROCESSED"}}')
    assert sign(body, "test-security-key") == "YYqNNAD/+iWXhHNJBJPOCarD8/HZ+vMlAk3cq6JY7tA="


@pytest.mark.parametrize("key", [None, "not-a-uuid", "3bb0e47c-e7a5-11f1-9be9-02fc00000001"])  # last: a UUID1
def test_subscription_needs_uuid4_key(client, receiver, key):
    body = {"name": "x", "notificationUrl": receiver.url, "events": [{"type": "bill.created", "version": "1"}]}
    headers = {"X-Idempotent-Key": key} if key else {}
    assert client.post("/v3/subscriptions", body, events=True, headers=headers).status_code == 400


def test_subscription_idempotent_replay_and_hidden_key(client, receiver):
    key = str(uuid.uuid4())
    first = subscribe(client, receiver.url, key=key)
    assert first.status_code == 200
    sub = first.json()
    assert sub["securityKey"] and sub["organizationId"] == catalog.BILL_ORG_ID and sub["status"]["enabled"]
    again = subscribe(client, receiver.url, key=key)
    assert again.json() == sub
    listed = client.get("/v3/subscriptions", events=True).json()["results"]
    assert [s["id"] for s in listed] == [sub["id"]]
    got = client.get(f"/v3/subscriptions/{sub['id']}", events=True).json()
    assert "securityKey" not in got and got["notificationUrl"] == receiver.url


def test_subscription_validation(client):
    resp = subscribe(client, "http://example.com/hook")
    assert resp.status_code == 400 and "HTTPS" in resp.json()[0]["message"]
    resp = client.post("/v3/subscriptions", {"name": "x", "notificationUrl": "https://example.com/h",
                                             "events": [{"type": "bill.exploded", "version": "1"}]},
                       events=True, headers={"X-Idempotent-Key": str(uuid.uuid4())})
    assert resp.status_code == 400
    catalog_types = {e["type"] for e in client.get("/v3/events/catalog", events=True).json()}
    assert {"bill.created", "payment.updated", "vendor.updated"} <= catalog_types


def test_delivery_is_signed_over_raw_bytes(client, receiver):
    sub = subscribe(client, receiver.url).json()
    bill = post_bill(client)
    [(headers, body)] = receiver.calls
    assert headers["content-type"] == "application/json"
    expected = base64.b64encode(hmac.new(sub["securityKey"].encode(), body, hashlib.sha256).digest()).decode()
    assert headers["x-bill-sha-signature"] == expected
    assert b": " not in body and b", " not in body  # minified
    event = json.loads(body)
    assert event["metadata"]["eventType"] == "bill.created" and event["metadata"]["version"] == "1"
    assert event["metadata"]["subscriptionId"] == sub["id"]
    assert event["metadata"]["organizationId"] == catalog.BILL_ORG_ID
    assert uuid.UUID(event["metadata"]["eventId"]).version == 4
    assert event["bill"]["id"] == bill["id"] and event["bill"]["amount"] == 228.99


def test_payment_updated_payload(sim, client, receiver):
    subscribe(client, receiver.url, events=("payment.updated",))
    bill = post_bill(client, amounts=("100.00",))
    payment = sim.pay_bills([(bill["id"], Decimal("60.00"))])
    [event] = receiver.events()
    p = event["payment"]
    assert p["id"] == payment["id"] and p["billIds"] == [bill["id"]] and p["status"] == "PROCESSED"
    assert p["funding"] == {"amount": 60.0, "currency": "USD", "fundingAccount": p["funding"]["fundingAccount"]}
    assert p["vendor"] == {"id": VENDOR, "name": "Contoso Facilities"}
    assert {"transactionNumber", "createdTime", "updatedTime", "processDate", "billingType"} <= set(p)
    sim.void_payment(payment["id"])
    assert receiver.events()[-1]["payment"]["status"] == "VOIDED"


def test_only_subscribed_types_and_enabled(client, receiver):
    sub = subscribe(client, receiver.url, events=("vendor.created",)).json()
    post_bill(client)
    client.post("/v3/vendors", {"name": "Hooked"})
    assert [e["metadata"]["eventType"] for e in receiver.events()] == ["vendor.created"]
    client.call("PATCH", f"/v3/subscriptions/{sub['id']}", events=True, json={"status": {"enabled": False}})
    client.post("/v3/vendors", {"name": "Not hooked"})
    assert len(receiver.calls) == 1


def test_retries_then_disable_and_reenable(sim, client, receiver):
    receiver.status = 500
    sub = subscribe(client, receiver.url, events=("vendor.created",)).json()
    client.post("/v3/vendors", {"name": "Retry Me"})
    assert len(receiver.calls) == 5  # first try + 4 retries
    assert [d[3] for d in sim.deliveries] == [500] * 5
    assert len({json.loads(b)["metadata"]["eventId"] for _, b in receiver.calls}) == 1
    got = client.get(f"/v3/subscriptions/{sub['id']}", events=True).json()
    assert got["status"]["enabled"] is False
    client.post("/v3/vendors", {"name": "Not sent"})
    assert len(receiver.calls) == 5
    receiver.status = 200
    resp = client.call("PATCH", f"/v3/subscriptions/{sub['id']}", events=True, json={"status": {"enabled": True}})
    assert resp.json()["status"]["enabled"] is True
    client.post("/v3/vendors", {"name": "Sent again"})
    assert len(receiver.calls) == 6 and receiver.events()[-1]["vendor"]["name"] == "Sent again"


def test_unreachable_receiver_recorded(sim, client):
    sim.webhook_retry_delays = ()
    subscribe(client, "http://127.0.0.1:9/nothing", events=("vendor.created",))
    client.post("/v3/vendors", {"name": "Nobody listens"})
    [(_, _, _, result)] = sim.deliveries
    assert "ConnectionError" in result


def test_security_key_rotation(client, receiver):
    sub = subscribe(client, receiver.url, events=("vendor.created",)).json()
    path = f"/v3/subscriptions/{sub['id']}/security_key"
    assert client.post(path, events=True).status_code == 400  # X-Idempotent-Key required
    key = str(uuid.uuid4())
    new_key = client.post(path, events=True, headers={"X-Idempotent-Key": key}).json()["securityKey"]
    assert new_key != sub["securityKey"]
    assert client.post(path, events=True, headers={"X-Idempotent-Key": key}).json()["securityKey"] == new_key
    client.post("/v3/vendors", {"name": "After Rotation"})
    [(headers, body)] = receiver.calls
    assert headers["x-bill-sha-signature"] == sign(body, new_key) != sign(body, sub["securityKey"])


def test_duplicate_delivery_same_event_id(sim, client, receiver):
    sim.webhook_duplicate_rate = 1.0
    subscribe(client, receiver.url, events=("vendor.created",))
    client.post("/v3/vendors", {"name": "Twice"})
    ids = [e["metadata"]["eventId"] for e in receiver.events()]
    assert len(ids) == 2 and ids[0] == ids[1]


def test_async_delivery(sim, client, receiver):
    sim.webhook_sync = False
    subscribe(client, receiver.url, events=("bill.created",))
    bills = [json.loads(dumps(bill_body(number=f"A-{i}"))) for i in range(30)]
    assert client.post("/v3/bills/bulk", bills).status_code == 201
    assert sim.wait_for_webhooks(10)
    assert len(receiver.calls) == 30


def test_test_event_events_list_and_resend(client, receiver):
    sub = subscribe(client, receiver.url, events=("vendor.updated",)).json()
    resp = client.post(f"/v3/subscriptions/{sub['id']}/test", {"eventType": "bill.created", "version": "1"},
                       events=True)
    assert resp.status_code == 200
    assert receiver.events()[0]["metadata"]["eventType"] == "bill.created"
    listed = client.get(f"/v3/events/subscription/{sub['id']}", events=True).json()["results"]
    assert len(listed) == 1 and listed[0]["statusCode"] == 200
    assert json.loads(listed[0]["payload"]) == receiver.events()[0]
    resent = client.post(f"/v3/events/subscription/{sub['id']}/event/{listed[0]['id']}", events=True)
    assert resent.status_code == 200
    assert receiver.calls[1][1] == receiver.calls[0][1]


def test_delete_subscription(client, receiver):
    sub = subscribe(client, receiver.url, events=("vendor.created",)).json()
    assert client.call("DELETE", f"/v3/subscriptions/{sub['id']}", events=True).status_code == 200
    assert client.get(f"/v3/subscriptions/{sub['id']}", events=True).status_code == 404
    client.post("/v3/vendors", {"name": "Unheard"})
    assert receiver.calls == []


# ------------------------------------------------------------------------------------------------ control


def test_sim_control_endpoints(sim, server, client):
    bill = post_bill(client, amounts=("50.00",))
    knobs = requests.post(server.url + "/_sim/knobs", json={"latency": 0.01, "concurrency_limit": 2}).json()
    assert knobs["latency"] == 0.01 and sim.concurrency_limit == 2
    assert requests.post(server.url + "/_sim/knobs", json={"nope": 1}).status_code == 400
    paid = requests.post(server.url + "/_sim/pay", json={"payments": [[bill["id"], "50.00"]],
                                                        "process_date": "2026-12-01"}).json()
    assert paid["status"] == "PAID" and paid["processDate"] == "2026-12-01"
    voided = requests.post(server.url + "/_sim/void", json={"payment_id": paid["id"]}).json()
    assert voided["status"] == "VOID"
    stats = requests.get(server.url + "/_sim/stats").json()
    assert stats["request_count"] == sim.request_count and stats["login_count"] == 1
    assert stats["requests_by_path"]["POST /v3/bills"] == 1
    assert f"{catalog.BILL_DEV_KEY}|{catalog.BILL_ORG_ID}" in stats["max_in_flight_seen"]
    assert requests.get(server.url + "/_sim/deliveries").json() == []


def test_make_app_sets_knobs():
    app = make_app(latency=0.5, webhook_sync=True, seed=False)
    assert app.latency == 0.5 and app.webhook_sync is True
    assert app.entities("vendors") == []
    with pytest.raises(TypeError):
        make_app(not_a_knob=1)


def test_entities_kinds(sim):
    assert len(sim.entities("vendors")) == len(catalog.BILL_VENDORS)
    assert len(sim.entities("chart-of-accounts")) == len(catalog.BILL_ACCOUNTS)
    assert len(sim.entities("departments")) == len(catalog.BILL_DEPARTMENTS)
    assert sim.entities("bills") == sim.entities("payments") == sim.entities("subscriptions") == []


GARBAGE = [None, 0, True, "x", [], [1], {}, {"a": [1]}, [{"id": []}], "é" * 3, 1e308, -1]


def test_garbage_input_never_gives_500(sim, client, receiver):
    """Wrongly typed JSON anywhere must give a BILL 4xx error array, never a 500.
    Driven in-process (werkzeug test client, same WSGI app) because it sends a few thousand requests."""
    wsgi = WsgiClient(sim)
    bill = post_bill(client)
    sub = subscribe(client, receiver.url).json()
    targets = [("POST", "/v3/vendors", False), ("POST", "/v3/vendors/bulk", False),
               ("PATCH", f"/v3/vendors/{VENDOR}", False), ("POST", "/v3/bills", False),
               ("POST", "/v3/bills/bulk", False), ("PATCH", f"/v3/bills/{bill['id']}", False),
               ("PUT", f"/v3/bills/{bill['id']}", False), ("POST", "/v3/payments", False),
               ("POST", "/v3/classifications/chart-of-accounts", False),
               ("PATCH", f"/v3/classifications/departments/{DEPT_ADMIN}", False),
               ("PATCH", f"/v3/subscriptions/{sub['id']}", True), ("PUT", f"/v3/subscriptions/{sub['id']}", True),
               ("POST", f"/v3/subscriptions/{sub['id']}/test", True)]
    fields = ["name", "vendorId", "billLineItems", "invoice", "address", "additionalInfo", "accountType",
              "paymentInformation", "billPayments", "billId", "parentId", "account", "events", "status",
              "notificationUrl", "classifications", "eventType", "dueDate"]
    for method, path, events in targets:
        bodies = list(GARBAGE) + [{f: g} for f in fields for g in GARBAGE]
        bodies += [{"name": "ok", "billLineItems": [{"id": g, "amount": 1}]} for g in GARBAGE]
        url = ("/connect-events" if events else "/connect") + path
        for body in bodies:
            resp = wsgi.open(url, method=method, json=body, headers=client.headers())
            assert resp.status_code < 500, (method, path, body, resp.text)
    for body in [b"", b"{", b"[" * 100000]:
        resp = client.call("POST", "/v3/vendors", data=body, headers={"Content-Type": "application/json"})
        assert_error(resp, 400, "BDC_1122")
    lone_surrogate = b'{"name": "\\ud800"}'  # legal JSON, not encodable as UTF-8: must still round-trip
    resp = client.call("POST", "/v3/vendors", data=lone_surrogate, headers={"Content-Type": "application/json"})
    assert resp.status_code == 201 and resp.json()["name"] == "\ud800"
    for g in GARBAGE:
        body = {"username": g, "password": g, "organizationId": g, "devKey": catalog.BILL_DEV_KEY}
        assert wsgi.post("/connect/v3/login", json=body).status_code == 400


# --- strict like the real BILL (api-facts-addendum §3) ------------------------------------------------------------
def test_vendor_create_requires_an_address_listing_every_missing_part(sim, client):
    sim.require_vendor_address = True
    resp = client.post("/v3/vendors", {"name": "No Address Co"})
    assert resp.status_code == 400
    assert [e["message"] for e in resp.json()] == ["address: must not be null"]
    assert resp.json()[0]["code"] is None and resp.json()[0]["params"] == {}
    resp = client.post("/v3/vendors", {"name": "Half Address Co", "address": {"line1": "1 Main St", "country": "US"}})
    assert resp.status_code == 400
    assert [e["message"] for e in resp.json()] == ["address.city: must not be blank",
                                                   "address.zipOrPostalCode: must not be blank"]
    assert "code" not in resp.json()[1] and resp.json()[1]["params"] == []
    full = {"line1": "1 Main St", "city": "Austin", "stateOrProvince": "TX", "zipOrPostalCode": "78701", "country": "US"}
    assert client.post("/v3/vendors", {"name": "Full Address Co", "address": full}).status_code == 201
    resp = client.post("/v3/vendors/bulk", [{"name": "A", "address": full}, {"name": "B"}])
    assert resp.status_code == 400 and resp.json()[0]["message"] == "[1].address: must not be null"


def test_bill_missing_three_fields_lists_all_three(client):
    resp = client.post("/v3/bills", {"invoice": {"invoiceDate": "2026-01-05"}, "billLineItems": [{"amount": 1}]})
    assert resp.status_code == 400
    assert [e["message"] for e in resp.json()] == ["vendorId: must not be null", "dueDate: must not be null",
                                                   "invoice.invoiceNumber: must not be null"]


def test_untrusted_session_payment_is_403_bdc_1361(sim, client):
    sim.untrusted_session = True
    resp = client.post("/v3/payments", {"billPayments": [{"billId": "00nX", "amount": 1}]})
    assert_error(resp, 403, "BDC_1361")
    assert resp.json()[0]["message"] == "Untrusted session."


def test_payment_process_date_not_in_the_future_is_422_with_an_entry_per_bill(sim, client):
    today = sim._today()
    resp = client.post("/v3/payments", {"processDate": today, "billPayments": [{"billId": "00nX", "amount": 1}]})
    assert resp.status_code == 422
    assert [e["message"] for e in resp.json()] == ["Invalid Process Date : ${paramName0}.",
                                                   "00nX : Invalid Process Date : ${paramName0}."]
