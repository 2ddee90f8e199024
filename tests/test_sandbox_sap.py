"""Tests for the SAP Business One Service Layer simulator, talking to it over real HTTP with `requests`."""

import threading
import time
from datetime import date, datetime, timedelta
from decimal import Decimal

import pytest
import requests

from connector.sandbox import catalog
from connector.sandbox.sap import SapError, SapSimulator, make_app
from connector.sandbox.server import serve

START = datetime(2026, 1, 15, 10, 0, 0)


class FakeClock:
    """Controllable server clock (the simulator calls it for UpdateDate/UpdateTime)."""

    def __init__(self, start=START):
        self.current = start

    def __call__(self):
        return self.current

    def advance(self, **delta):
        self.current += timedelta(**delta)

    def set(self, value):
        self.current = value


class Client:
    """Minimal Service Layer client: builds the Cookie header itself (see fact sheet §1.3)."""

    def __init__(self, base_url, version=1):
        self.base_url = base_url
        self.version = version
        self.root = f"{base_url}/b1s/v{version}"
        self.headers = {}

    def login(self, **overrides):
        body = {"CompanyDB": catalog.SAP_COMPANY_DB, "UserName": catalog.SAP_USER,
                "Password": catalog.SAP_PASSWORD, **overrides}
        response = requests.post(f"{self.root}/Login", json=body, timeout=10)
        if response.status_code == 200:
            self.headers = {"Cookie": f"B1SESSION={response.json()['SessionId']}; ROUTEID=.node1"}
        return response

    def on(self, version):
        other = Client(self.base_url, version)
        other.headers = dict(self.headers)
        return other

    def request(self, method, path, headers=None, **kwargs):
        return requests.request(method, f"{self.root}/{path}", headers={**self.headers, **(headers or {})},
                                timeout=10, **kwargs)

    def get(self, path, **kwargs):
        return self.request("GET", path, **kwargs)

    def post(self, path, body=None, **kwargs):
        return self.request("POST", path, json=body, **kwargs)

    def patch(self, path, body, **kwargs):
        return self.request("PATCH", path, json=body, **kwargs)

    def pages(self, path, headers=None):
        """Follow nextLinks; returns the list of pages (each a list of rows) and the links seen."""
        pages, links, url = [], [], f"{self.root}/{path}"
        next_key = "odata.nextLink" if self.version == 1 else "@odata.nextLink"
        while url:
            response = requests.get(url, headers={**self.headers, **(headers or {})}, timeout=10)
            assert response.status_code == 200, response.text
            body = response.json()
            pages.append(body["value"])
            link = body.get(next_key)
            links.append(link)
            url = f"{self.root}/{link}" if link else None
        return pages, links


def error_of(response):
    """(code as str, message) from either error shape."""
    error = response.json()["error"]
    message = error["message"]
    return str(error["code"]), message["value"] if isinstance(message, dict) else message


def line(account="6100", amount="100.00", tax="TX8", center="ADMIN", **extra):
    return {"AccountCode": account, "LineTotal": Decimal(amount), "TaxCode": tax, "CostingCode": center, **extra}


# ------------------------------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def shared():
    """One simulator for read-mostly tests (master data, login, errors)."""
    sim = SapSimulator()
    sim.seed_demo_invoices()
    server = serve(sim)
    yield sim, server
    server.stop()


@pytest.fixture(autouse=True)
def restore_knobs(request):
    yield
    if "shared" in request.fixturenames:
        sim = request.getfixturevalue("shared")[0]
        sim.latency = sim.error_rate = sim.login_latency = 0.0
        sim.session_idle_seconds = None
        sim.expiry_response = "standard"


@pytest.fixture
def client(shared):
    c = Client(shared[1].url)
    assert c.login().status_code == 200
    return c


class Switch:
    """WSGI app forwarding to a replaceable simulator, so tests get fresh state without a new server each."""

    def __init__(self):
        self.sim = None

    def __call__(self, environ, start_response):
        return self.sim(environ, start_response)


@pytest.fixture(scope="module")
def switch():
    app = Switch()
    server = serve(app)
    yield app, server
    server.stop()


class Fresh:
    def __init__(self, sim, server, clock):
        self.sim, self.server, self.clock = sim, server, clock
        self.client = Client(server.url)
        assert self.client.login().status_code == 200


@pytest.fixture
def fresh(switch):
    """A new simulator with a controllable clock, for tests that need exact state."""
    clock = FakeClock()
    app, server = switch
    app.sim = SapSimulator(clock=clock)
    return Fresh(app.sim, server, clock)


# ------------------------------------------------------------------------------------------------- login/session

def test_ping_needs_no_login(shared):
    response = requests.get(f"{shared[1].url}/ping/", timeout=5)
    assert response.status_code == 200
    assert response.json()["message"] == "pong"
    assert response.json()["sender"] == "load balancer"


def test_login_returns_documented_cookies_and_body(shared):
    response = Client(shared[1].url).login()
    assert response.status_code == 200
    body = response.json()
    cookies = response.raw.headers.getlist("Set-Cookie")
    assert cookies == [f"B1SESSION={body['SessionId']};HttpOnly;", "ROUTEID=.node1; path=/b1s"]
    assert "path" not in cookies[0].lower()
    assert body["Version"] == "1000340"
    assert body["SessionTimeout"] == 30
    assert body["odata.metadata"].endswith("/b1s/v1/$metadata#B1Sessions/@Element")
    v2 = Client(shared[1].url, 2).login().json()
    assert "@odata.context" in v2 and "odata.metadata" not in v2


@pytest.mark.parametrize("overrides, code", [({"Password": "wrong"}, "-304"), ({"UserName": "nobody"}, "-304"),
                                              ({"CompanyDB": "SBODEMOXX"}, "-306")])
def test_login_failures(shared, overrides, code):
    response = Client(shared[1].url).login(**overrides)
    assert response.status_code == 401
    assert error_of(response) == (code, "Fail to NONE-SSO login from SLD.")


def test_login_path_is_case_sensitive(shared):
    body = {"CompanyDB": catalog.SAP_COMPANY_DB, "UserName": catalog.SAP_USER, "Password": catalog.SAP_PASSWORD}
    response = requests.post(f"{shared[1].url}/b1s/v1/login", json=body, timeout=5)
    assert response.status_code == 401
    assert error_of(response)[0] == "301"


@pytest.mark.parametrize("cookie", [None, "B1SESSION=garbage; ROUTEID=.node1", "ROUTEID=.node1"])
def test_invalid_session_error_shapes(shared, cookie):
    headers = {"Cookie": cookie} if cookie else {}
    v1 = requests.get(f"{shared[1].url}/b1s/v1/BusinessPartners", headers=headers, timeout=5)
    assert v1.status_code == 401
    assert v1.json() == {"error": {"code": 301, "message": {
        "lang": "en-us", "value": "Invalid session or session already timeout."}}}
    v2 = requests.get(f"{shared[1].url}/b1s/v2/BusinessPartners", headers=headers, timeout=5)
    assert v2.status_code == 401
    assert v2.json() == {"error": {"code": "301", "message": "Invalid session or session already timeout.",
                                   "details": [{"code": "", "message": ""}]}}


def test_one_session_serves_both_versions(client):
    assert client.get("ChartOfAccounts").status_code == 200
    assert client.on(2).get("ChartOfAccounts").status_code == 200


def test_requests_cookie_jar_does_not_send_v1_session_to_v2(shared):
    """The documented pitfall: B1SESSION has no Path, so the jar scopes it to /b1s/v1."""
    session = requests.Session()
    body = {"CompanyDB": catalog.SAP_COMPANY_DB, "UserName": catalog.SAP_USER, "Password": catalog.SAP_PASSWORD}
    assert session.post(f"{shared[1].url}/b1s/v1/Login", json=body, timeout=5).status_code == 200
    assert session.get(f"{shared[1].url}/b1s/v1/Dimensions", timeout=5).status_code == 200
    assert session.get(f"{shared[1].url}/b1s/v2/Dimensions", timeout=5).status_code == 401


def test_logout_ends_session(client):
    assert client.post("Logout").status_code == 204
    response = client.get("Dimensions")
    assert response.status_code == 401
    assert error_of(response)[0] == "301"


def test_idle_expiry_and_extension(shared, client):
    shared[0].session_idle_seconds = 0.6
    for _ in range(3):  # used every 0.25 s: stays valid well past 0.6 s in total
        time.sleep(0.25)
        assert client.get("Dimensions").status_code == 200
    time.sleep(1.0)
    response = client.get("Dimensions")
    assert response.status_code == 401
    assert error_of(response) == ("301", "Invalid session or session already timeout.")


@pytest.mark.parametrize("expiry", ["standard", "strings"])
def test_expiry_is_always_401_301_in_either_real_shape(shared, client, expiry):
    shared[0].expiry_response = expiry
    shared[0].expire_all_sessions()
    response = client.get("Dimensions")
    assert response.status_code == 401
    assert error_of(response) == ("301", "Invalid session or session already timeout.")
    raw = response.json()["error"]
    if client.version == 1:
        assert raw["code"] == ("301" if expiry == "strings" else 301)
        assert isinstance(raw["message"], str if expiry == "strings" else dict)
    assert client.login().status_code == 200
    assert client.get("Dimensions").status_code == 200


def test_parallel_logins_over_limit_fail_with_299(shared):
    shared[0].login_latency = 0.5
    barrier = threading.Barrier(6)
    results = []

    def login():
        barrier.wait()
        results.append(Client(shared[1].url).login())

    threads = [threading.Thread(target=login) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    statuses = sorted(r.status_code for r in results)
    assert 1 <= statuses.count(200) <= 2
    failures = [r for r in results if r.status_code == 500]
    assert failures and all(error_of(r) == ("299", "SAML Login Failed") for r in failures)


# ------------------------------------------------------------------------------------------------- master data

def test_suppliers_by_enum_name_or_code(client):
    by_name = client.get("BusinessPartners?$filter=CardType eq 'cSupplier'&$select=CardCode").json()["value"]
    by_code = client.get("BusinessPartners?$filter=CardType eq 'S'&$select=CardCode").json()["value"]
    assert by_name == by_code
    assert [bp["CardCode"] for bp in by_name] == [f"V{n}" for n in range(1000, 1011)]


def test_business_partner_by_string_key(client):
    bp = client.get("BusinessPartners('V1009')").json()
    assert bp["Frozen"] == "tYES" and bp["Valid"] == "tNO"
    assert bp["BPAddresses"][0]["AddressType"] == "bo_BillTo" and bp["BPAddresses"][0]["BPCode"] == "V1009"
    assert client.get("BusinessPartners('V1010')").json()["Currency"] == "EUR"
    assert client.get("BusinessPartners('V1000')").json()["Currency"] == "USD"
    assert client.get("BusinessPartners('NOPE')").status_code == 404


def test_accounts_cost_centres_rules_tax_codes(client):
    accounts = client.get("ChartOfAccounts?$filter=ActiveAccount eq 'tYES'", headers={"B1S-PageSize": "0"})
    codes = [a["Code"] for a in accounts.json()["value"]]
    assert "6000" not in codes and "_SYS00000000004" in codes
    rule = client.get("DistributionRules('SPLIT50')").json()
    assert rule["Direct"] == "tNO" and rule["TotalFactor"] == 100.0
    assert [(x["CenterCode"], x["TotalInCenter"]) for x in rule["DistributionRuleLines"]] == [("ADMIN", 50.0),
                                                                                          ("SALES", 50.0)]
    direct = client.get("DistributionRules('IT')").json()
    assert direct["Direct"] == "tYES" and direct["DistributionRuleLines"][0]["CenterCode"] == "IT"
    assert client.get("ProfitCenters('EAST')").json()["InWhichDimension"] == 2
    assert client.get("Dimensions(1)").json()["DimensionName"] == "Department"
    vat = client.get("VatGroups('TX8')").json()
    assert vat["Category"] == "bovcInputTax" and vat["VatGroups_Lines"][0]["Rate"] == 8.25
    assert client.get("AdditionalExpenses(1)").json()["ExpenseAccount"] == "5100"


def test_business_partner_patch_bumps_update_timestamp(fresh):
    fresh.clock.set(datetime(2026, 2, 1, 14, 30, 5))
    assert fresh.client.patch("BusinessPartners('V1001')", {"EmailAddress": "new@contoso.example"}).status_code == 204
    bp = fresh.client.get("BusinessPartners('V1001')").json()
    assert (bp["EmailAddress"], bp["UpdateDate"], bp["UpdateTime"]) == ("new@contoso.example", "2026-02-01",
                                                                         "14:30:05")
    changed = fresh.client.get("BusinessPartners?$filter=UpdateDate ge '2026-02-01'&$select=CardCode").json()
    assert changed["value"] == [{"CardCode": "V1001"}]


def test_business_partner_post_and_duplicate(fresh):
    body = {"CardCode": "V2000", "CardName": "New Vendor", "CardType": "cSupplier",
            "BPAddresses": [{"AddressName": "Bill To", "Street": "1 Main St", "City": "Dallas"}]}
    created = fresh.client.post("BusinessPartners", body)
    assert created.status_code == 201
    assert created.json()["CreateDate"] == "2026-01-15" and created.json()["BPAddresses"][0]["BPCode"] == "V2000"
    duplicate = fresh.client.post("BusinessPartners", body)
    assert duplicate.status_code == 400 and error_of(duplicate)[1].startswith("1320000140")
    wrong = fresh.client.post("BusinessPartners", {"CardCode": "V2001", "Colour": "red"})
    assert error_of(wrong) == ("-1000", "Property 'Colour' of 'BusinessPartner' is invalid")


# ------------------------------------------------------------------------------------------------- paging

def add_invoices(sim, count, card_code="V1000"):
    return [sim.add_invoice(card_code, [line(amount=str(10 + n))])["DocEntry"] for n in range(count)]


def test_default_page_size_and_relative_next_link(fresh):
    add_invoices(fresh.sim, 45)
    first = fresh.client.get("PurchaseInvoices?$select=DocEntry").json()
    assert len(first["value"]) == 20
    assert first["odata.nextLink"] == "PurchaseInvoices?$select=DocEntry&$skip=20"
    pages, links = fresh.client.pages("PurchaseInvoices?$select=DocEntry")
    assert [len(p) for p in pages] == [20, 20, 5]
    assert links[-1] is None
    assert [r["DocEntry"] for p in pages for r in p] == list(range(1, 46))


def test_full_last_page_has_next_link_then_empty_page(fresh):
    add_invoices(fresh.sim, 40)
    pages, links = fresh.client.pages("PurchaseInvoices?$select=DocEntry")
    assert [len(p) for p in pages] == [20, 20, 0]
    assert links == ["PurchaseInvoices?$select=DocEntry&$skip=20", "PurchaseInvoices?$select=DocEntry&$skip=40",
                     None]


def test_prefer_maxpagesize_repeats_query_options(fresh):
    add_invoices(fresh.sim, 7, "V1000")
    add_invoices(fresh.sim, 3, "V1001")
    path = "PurchaseInvoices?$filter=CardCode eq 'V1000'&$orderby=DocEntry desc&$select=DocEntry,CardCode"
    response = fresh.client.get(path, headers={"Prefer": "odata.maxpagesize=3"})
    assert response.headers["Preference-Applied"] == "odata.maxpagesize=3"
    body = response.json()
    assert [r["DocEntry"] for r in body["value"]] == [7, 6, 5]
    assert body["odata.nextLink"] == ("PurchaseInvoices?$filter=CardCode%20eq%20'V1000'&$orderby=DocEntry%20desc"
                                      "&$select=DocEntry,CardCode&$skip=3")
    pages, _ = fresh.client.pages(path, headers={"Prefer": "odata.maxpagesize=3"})
    assert [r["DocEntry"] for p in pages for r in p] == [7, 6, 5, 4, 3, 2, 1]
    b1s = fresh.client.get("PurchaseInvoices", headers={"B1S-PageSize": "4"})
    assert len(b1s.json()["value"]) == 4 and "Preference-Applied" not in b1s.headers
    unpaged = fresh.client.get("PurchaseInvoices", headers={"Prefer": "odata.maxpagesize=0"}).json()
    assert len(unpaged["value"]) == 10 and "odata.nextLink" not in unpaged


def test_top_does_not_raise_page_size(fresh):
    add_invoices(fresh.sim, 50)
    body = fresh.client.get("PurchaseInvoices?$select=DocEntry&$top=30").json()
    assert len(body["value"]) == 20
    assert body["odata.nextLink"] == "PurchaseInvoices?$select=DocEntry&$top=10&$skip=20"
    pages, _ = fresh.client.pages("PurchaseInvoices?$select=DocEntry&$top=30&$skip=5")
    assert [r["DocEntry"] for p in pages for r in p] == list(range(6, 36))


def test_v2_annotations_dates_and_count(fresh):
    add_invoices(fresh.sim, 25)
    v2 = fresh.client.on(2)
    body = v2.get("PurchaseInvoices?$select=DocEntry,DocDate,UpdateTime&$count=true").json()
    assert body["@odata.context"].endswith("/b1s/v2/$metadata#PurchaseInvoices(DocDate,DocEntry,UpdateTime)")
    assert body["@odata.count"] == 25
    assert body["@odata.nextLink"] == "PurchaseInvoices?$select=DocEntry,DocDate,UpdateTime&$count=true&$skip=20"
    assert body["value"][0] == {"DocEntry": 1, "DocDate": "2026-01-15T00:00:00Z", "UpdateTime": "10:00:00"}
    v1 = fresh.client.get("PurchaseInvoices(1)?$select=DocEntry,DocDate,UpdateTime").json()
    assert (v1["DocDate"], v1["UpdateTime"]) == ("2026-01-15", "10:00:00")
    assert v1["odata.metadata"].endswith("$metadata#PurchaseInvoices/@Element")


def test_count_endpoint_and_inline_count(fresh):
    add_invoices(fresh.sim, 5, "V1000")
    add_invoices(fresh.sim, 2, "V1002")
    for client in (fresh.client, fresh.client.on(2)):
        response = client.get("PurchaseInvoices/$count?$filter=CardCode eq 'V1002'")
        assert response.headers["Content-Type"].startswith("text/plain") and response.text == "2"
    inline = fresh.client.get("PurchaseInvoices?$inlinecount=allpages&$top=1&$filter=CardCode eq 'V1000'").json()
    assert inline["odata.count"] == 5 and len(inline["value"]) == 1


# ------------------------------------------------------------------------------------------------- query options

def test_select_controls_inline_lines(fresh):
    fresh.sim.add_invoice("V1000", [line(), line("6200", "50.00")])
    full = fresh.client.get("PurchaseInvoices(1)").json()
    assert len(full["DocumentLines"]) == 2 and "DocumentAdditionalExpenses" in full
    header_only = fresh.client.get("PurchaseInvoices?$select=DocEntry,DocTotal").json()["value"][0]
    assert header_only == {"DocEntry": 1, "DocTotal": 162.38}  # 108.25 + 50.00 + 4.13
    with_lines = fresh.client.get("PurchaseInvoices?$select=DocEntry,DocumentLines").json()["value"][0]
    assert [x["AccountCode"] for x in with_lines["DocumentLines"]] == ["6100", "6200"]


def test_orderby_multiple_keys(fresh):
    for card, amount in [("V1001", "5"), ("V1000", "7"), ("V1001", "3"), ("V1000", "9")]:
        fresh.sim.add_invoice(card, [line(amount=amount, tax="EX")])
    rows = fresh.client.get("PurchaseInvoices?$select=DocEntry&$orderby=CardCode asc,DocTotal desc").json()["value"]
    assert [r["DocEntry"] for r in rows] == [4, 2, 1, 3]


def test_filter_functions_enums_and_logic(fresh):
    fresh.sim.add_invoice("V1000", [line()], num_at_card="O'Brien-1", comments="urgent paper")
    fresh.sim.add_invoice("V1002", [line()], num_at_card="ACME-2")
    fresh.sim.add_invoice("V1004", [line()], num_at_card="INI-3")
    fresh.sim.cancel_invoice(3)

    def entries(expr):
        response = fresh.client.get(f"PurchaseInvoices?$select=DocEntry&$filter={expr}")
        assert response.status_code == 200, response.text
        return [r["DocEntry"] for r in response.json()["value"]]

    assert entries("startswith(NumAtCard,'ACME')") == [2]
    assert entries("endswith(NumAtCard,'-3')") == [3, 4]
    assert entries("contains(Comments,'paper')") == [1]
    assert entries("substringof('Brien',NumAtCard)") == [1]
    assert entries("NumAtCard eq 'O''Brien-1'") == [1]
    assert entries("not startswith(NumAtCard,'ACME') and CancelStatus eq 'csNo'") == [1]
    assert entries("CancelStatus eq 'C'") == [4]
    assert entries("Cancelled eq 'Y' or (DocumentStatus eq 'bost_Open' and CardCode eq 'V1000')") == [1, 3]
    assert entries("DocTotal ge 108.25 and DocTotal lt 108.26 and DocEntry ne 1") == [2, 3, 4]
    assert entries("startswith(CardName,'acme') eq true") == []
    response = fresh.client.get("PurchaseInvoices?$select=DocEntry&$filter=startswith(CardName,'acme')",
                                headers={"B1S-CaseInsensitive": "true"})
    assert [r["DocEntry"] for r in response.json()["value"]] == [2]


@pytest.mark.parametrize("query, message", [
    ("$filter=Colour eq 'red'", "Property 'Colour' is invalid"),
    ("$select=DocEntry,Colour", "Property 'Colour' is invalid"),
    ("$orderby=Colour desc", "Property 'Colour' is invalid"),
    ("$filter=DocTotal eq", "Query string error - Invalid filter condition"),
    ("$filter=(DocTotal gt 1", "Query string error - Invalid filter condition"),
    ("$filter=DocumentStatus eq 'bost_Nope'", "Query string error - Invalid filter condition"),
    ("$filter=UpdateDate gt 'yesterday'", "Query string error - Invalid filter condition"),
])
def test_query_errors(client, query, message):
    v1 = client.get(f"PurchaseInvoices?{query}")
    assert v1.status_code == 400
    assert v1.json()["error"] == {"code": 201, "message": {"lang": "en-us", "value": message}}
    v2 = client.on(2).get(f"PurchaseInvoices?{query}")
    assert v2.status_code == 400 and v2.json()["error"]["code"] == "201" and v2.json()["error"]["message"] == message


def test_delta_filter_across_day_boundary(fresh):
    fresh.clock.set(datetime(2026, 1, 14, 12, 0, 0))
    old = fresh.sim.add_invoice("V1000", [line()])["DocEntry"]
    fresh.clock.set(datetime(2026, 1, 15, 23, 58, 30))
    late = fresh.sim.add_invoice("V1001", [line()])["DocEntry"]
    fresh.clock.advance(minutes=2)  # 2026-01-16 00:00:30
    after_midnight = fresh.sim.add_invoice("V1002", [line()])["DocEntry"]
    delta = ("(UpdateDate gt '2026-01-15' or (UpdateDate eq '2026-01-15' and UpdateTime ge '23:58:00'))"
             "&$orderby=UpdateDate asc,UpdateTime asc,DocEntry asc")
    rows = fresh.client.get(f"PurchaseInvoices?$select=DocEntry,UpdateDate,UpdateTime&$filter={delta}").json()
    assert [(r["DocEntry"], r["UpdateDate"], r["UpdateTime"]) for r in rows["value"]] == [
        (late, "2026-01-15", "23:58:30"), (after_midnight, "2026-01-16", "00:00:30")]
    naive = fresh.client.get("PurchaseInvoices?$select=DocEntry"
                             "&$filter=UpdateDate ge '2026-01-15' and UpdateTime ge '23:58:00'").json()
    assert [r["DocEntry"] for r in naive["value"]] == [late]  # the documented bug: drops the next-day change
    assert old not in [r["DocEntry"] for r in rows["value"]]


@pytest.mark.parametrize("expr, matches", [
    ("UpdateTime ge '10:15:59'", True),  # same minute: seconds ignored
    ("UpdateTime gt '10:15:00'", False),
    ("UpdateTime eq '101500'", True),
    ("UpdateTime eq '10:15'", True),
    ("UpdateTime lt '10:16'", True),
    ("UpdateTime le '10:14:59'", False),
    ("UpdateDate eq '20260115'", True),
    ("UpdateDate eq datetime'2026-01-15T18:00:00'", True),
    ("CreationDate lt '2026-01-15'", False),
])
def test_time_and_date_literals(fresh, expr, matches):
    fresh.clock.set(datetime(2026, 1, 15, 10, 15, 45))
    fresh.sim.add_invoice("V1000", [line()])
    rows = fresh.client.get(f"PurchaseInvoices?$select=DocEntry&$filter={expr}").json()["value"]
    assert bool(rows) is matches


# ------------------------------------------------------------------------------------------------- invoices

def test_invoice_totals_tax_discount_freight_rounding(fresh):
    invoice = fresh.sim.add_invoice(
        "V1006", [line(amount="100.00", tax="TX8"), line("6700", "50.55", "TX5", "OPS")],
        discount_percent=10, freight=[{"ExpenseCode": 1, "LineTotal": "25.00", "TaxCode": "TX8"}], rounding=True)
    assert invoice["TotalDiscount"] == Decimal("15.05")
    assert [x["TaxTotal"] for x in invoice["DocumentLines"]] == [Decimal("7.43"), Decimal("2.28")]
    assert invoice["DocumentAdditionalExpenses"][0]["TaxSum"] == Decimal("2.06")
    assert invoice["VatSum"] == Decimal("11.77")
    assert invoice["RoundingDiffAmount"] == Decimal("-0.27")
    assert invoice["DocTotal"] == Decimal("172.00")
    body = fresh.client.get(f"PurchaseInvoices({invoice['DocEntry']})").json()
    assert (body["DocTotal"], body["VatSum"], body["TotalDiscount"], body["RoundingDiffAmount"]) == (
        172.0, 11.77, 15.05, -0.27)
    assert body["DocumentLines"][1]["LineTotal"] == 50.55  # lines keep their pre-discount amount
    plain = fresh.sim.add_invoice("V1000", [line(amount="100.00", tax="TX8")])
    assert (plain["VatSum"], plain["DocTotal"], plain["RoundingDiffAmount"]) == (
        Decimal("8.25"), Decimal("108.25"), Decimal("0"))


def test_foreign_currency_invoice_keeps_fc_and_lc_totals(fresh):
    invoice = fresh.sim.add_invoice("V1010", [line("6700", "1000.00", "EX", "WH")], currency="EUR")
    assert (invoice["DocCurrency"], invoice["DocRate"]) == ("EUR", Decimal("1.085"))
    assert (invoice["DocTotalFc"], invoice["DocTotal"]) == (Decimal("1000.00"), Decimal("1085.00"))
    assert invoice["DocumentLines"][0]["RowTotalFC"] == Decimal("1000.00")


def test_post_invoice_over_http(fresh):
    body = {"CardCode": "V1000", "DocDate": "2026-01-10", "DocDueDate": "2026-02-09", "NumAtCard": "NW-1",
            "DocumentLines": [{"AccountCode": "6100", "LineTotal": 200.0, "TaxCode": "TX5", "CostingCode": "SALES",
                               "ItemDescription": "Paper"}]}
    created = fresh.client.post("PurchaseInvoices", body)
    assert created.status_code == 201
    assert created.headers["Location"].endswith("/b1s/v1/PurchaseInvoices(1)")
    assert (created.json()["DocTotal"], created.json()["DocDueDate"]) == (210.0, "2026-02-09")
    minimal = fresh.client.post("PurchaseInvoices", body, headers={"Prefer": "return-no-content"})
    assert minimal.status_code == 204 and minimal.headers["Location"].endswith("PurchaseInvoices(2)")


@pytest.mark.parametrize("change, code, text", [
    ({"CardCode": "V1009"}, "-10", "10001071 - Business partner V1009 is inactive"),
    ({"CardCode": "C2000"}, "-10", "BP 'C2000' is not a vendor"),
    ({"CardCode": "V7777"}, "-10", "Invalid BP code 'V7777'"),
    ({"DocumentLines": [{"AccountCode": "9999", "LineTotal": 1}]}, "-2028", "No matching records found"),
    ({"DocumentLines": [{"AccountCode": "6000", "LineTotal": 1}]}, "-10", "title account"),
    ({"DocumentLines": [{"AccountCode": "6100", "LineTotal": 1, "TaxCode": "ZZ"}]}, "-10", "10000180"),
    ({"DocumentLines": [{"AccountCode": "6100", "LineTotal": 1, "CostingCode": "EAST"}]}, "-10", "dimension 1"),
    ({"DocumentLines": []}, "-5002", "without rows"),
    ({"Lines": []}, "-1000", "Property 'Lines' of 'Document' is invalid"),
])
def test_post_invoice_validation(fresh, change, code, text):
    body = {"CardCode": "V1000", "DocumentLines": [{"AccountCode": "6100", "LineTotal": 10}], **change}
    response = fresh.client.post("PurchaseInvoices", body)
    assert response.status_code == 400
    assert error_of(response)[0] == code and text in error_of(response)[1]
    assert fresh.sim.entities("PurchaseInvoices") == []


def test_add_invoice_raises_sap_error_for_frozen_vendor(fresh):
    with pytest.raises(SapError) as caught:
        fresh.sim.add_invoice("V1009", [line()])
    assert caught.value.code == -10


def test_patch_invoice_recomputes_totals_and_bumps_update_time(fresh):
    doc = fresh.sim.add_invoice("V1000", [line(amount="100.00", tax="EX")])["DocEntry"]
    fresh.clock.set(datetime(2026, 1, 16, 8, 5, 9))
    patch = {"Comments": "fixed", "DocumentLines": [{"LineNum": 0, "LineTotal": 150.0},
                                                    {"AccountCode": "6200", "LineTotal": 50.0, "TaxCode": "EX"}]}
    assert fresh.client.patch(f"PurchaseInvoices({doc})", patch).status_code == 204
    body = fresh.client.get(f"PurchaseInvoices({doc})").json()
    assert (body["DocTotal"], body["Comments"], body["UpdateDate"], body["UpdateTime"]) == (
        200.0, "fixed", "2026-01-16", "08:05:09")
    assert body["CreationDate"] == "2026-01-15" and len(body["DocumentLines"]) == 2
    bad = fresh.client.patch(f"PurchaseInvoices({doc})", {"DocumentLines": [{"LineNum": 0, "AccountCode": "1"}]})
    assert bad.status_code == 400
    assert fresh.client.get(f"PurchaseInvoices({doc})").json()["DocumentLines"][0]["AccountCode"] == "6100"
    updated = fresh.sim.update_invoice(doc, lines=[line(amount="10.00", tax="EX")], rounding=False)
    assert updated["DocTotal"] == Decimal("10.00") and len(updated["DocumentLines"]) == 1


def test_cancel_invoice_creates_cancellation_document(fresh):
    doc = fresh.sim.add_invoice("V1000", [line()], num_at_card="NW-9")["DocEntry"]
    fresh.clock.advance(hours=1)
    assert fresh.client.post(f"PurchaseInvoices({doc})/Cancel").status_code == 204
    original = fresh.client.get(f"PurchaseInvoices({doc})").json()
    assert (original["Cancelled"], original["CancelStatus"], original["DocumentStatus"]) == (
        "tYES", "csYes", "bost_Close")
    assert original["UpdateTime"] == "11:00:00"
    rows = fresh.client.get("PurchaseInvoices?$filter=CancelStatus eq 'csCancellation'").json()["value"]
    assert len(rows) == 1
    cancellation = rows[0]
    assert cancellation["DocEntry"] != doc and cancellation["Cancelled"] == "tNO"
    assert (cancellation["DocumentStatus"], cancellation["NumAtCard"], cancellation["DocTotal"]) == (
        "bost_Close", "NW-9", original["DocTotal"])
    assert len(cancellation["DocumentLines"]) == 1
    again = fresh.client.post(f"PurchaseInvoices({doc})/Cancel")
    assert again.status_code == 400 and error_of(again)[0] == "-10"


def test_close_delete_and_missing_keys(fresh):
    doc = fresh.sim.add_invoice("V1000", [line()])["DocEntry"]
    assert fresh.client.post(f"PurchaseInvoices({doc})/Close").status_code == 204
    assert fresh.client.get(f"PurchaseInvoices({doc})").json()["DocumentStatus"] == "bost_Close"
    deleted = fresh.client.request("DELETE", f"PurchaseInvoices({doc})")
    assert deleted.status_code == 400
    assert error_of(deleted) == ("-5006", "The requested action is not supported for this object.")
    missing = fresh.client.get("PurchaseInvoices(999)")
    assert missing.status_code == 404 and error_of(missing) == ("-2028", "No matching records found (ODBC -2028)")
    assert fresh.client.post("PurchaseInvoices(999)/Cancel").status_code == 404
    unknown = fresh.client.get("Invoicez")
    assert unknown.status_code == 404 and error_of(unknown)[0] == "-1000"


# ------------------------------------------------------------------------------------------------- payments

def payment(doc_entries_amounts, card_code="V1000", **extra):
    lines = [{"LineNum": i, "DocEntry": d, "InvoiceType": "it_PurchaseInvoice", "SumApplied": float(a)}
             for i, (d, a) in enumerate(doc_entries_amounts)]
    total = float(sum(Decimal(str(a)) for _, a in doc_entries_amounts))
    body = {"CardCode": card_code, "DocType": "rSupplier", "DocDate": "2026-01-20",
            "TransferAccount": catalog.SAP_PAYMENT_ACCOUNT, "TransferDate": "2026-01-20", "TransferSum": total,
            "TransferReference": "BANK-1", "CounterReference": "EXT-1", "Remarks": "paid by connector",
            "JournalRemarks": "Payment", "PaymentInvoices": lines}
    body.update(extra)
    return body


def test_vendor_payment_applies_and_closes_invoice(fresh):
    doc = fresh.sim.add_invoice("V1000", [line()])["DocEntry"]  # 108.25
    fresh.clock.set(datetime(2026, 1, 20, 9, 0, 0))
    first = fresh.client.post("VendorPayments", payment([(doc, "50.00")]))
    assert first.status_code == 201, first.text
    body = first.json()
    assert (body["CardCode"], body["TransferSum"], body["Cancelled"], body["DocDate"]) == (
        "V1000", 50.0, "tNO", "2026-01-20")
    assert body["PaymentInvoices"][0]["DocEntry"] == doc and body["PaymentInvoices"][0]["SumApplied"] == 50.0
    assert (body["UpdateDate"], body["UpdateTime"]) == ("2026-01-20", "09:00:00")
    invoice = fresh.client.get(f"PurchaseInvoices({doc})").json()
    assert (invoice["PaidToDate"], invoice["DocumentStatus"], invoice["UpdateDate"]) == (
        50.0, "bost_Open", "2026-01-20")
    fresh.clock.advance(minutes=5)
    second = fresh.client.post("VendorPayments", payment([(doc, "58.25")], CounterReference="EXT-2"))
    assert second.status_code == 201
    invoice = fresh.client.get(f"PurchaseInvoices({doc})").json()
    assert (invoice["PaidToDate"], invoice["DocumentStatus"], invoice["UpdateTime"]) == (
        108.25, "bost_Close", "09:05:00")
    found = fresh.client.get("VendorPayments?$filter=CounterReference eq 'EXT-2' and Cancelled eq 'tNO'"
                             "&$select=DocEntry,TransferSum").json()["value"]
    assert found == [{"DocEntry": second.json()["DocEntry"], "TransferSum": 58.25}]


@pytest.mark.parametrize("make_body, code, text", [
    (lambda d: {**payment([(d["own"], 10)]), "Invoices": []}, "-1000", "Property 'Invoices' of 'Payment' is invalid"),
    (lambda d: payment([(d["other"], 10)]), "-10", "does not belong to business partner V1000"),
    (lambda d: payment([(d["cancelled"], 10)]), "-10", "cancelled"),
    (lambda d: payment([(d["own"], "108.26")]), "-10", "exceeds the open amount"),
    (lambda d: payment([(d["own"], 60), (d["own"], 60)]), "-10", "exceeds the open amount"),
    (lambda d: payment([(d["own"], 10)], TransferSum=11.0), "-10", "does not match"),
    (lambda d: payment([(d["own"], 10)], TransferAccount="6000"), "-10", "title account"),
    (lambda d: payment([(d["own"], 10)], TransferAccount="9999"), "-5002", "Code undefined [OVPM.TrsfrAcct]"),
    (lambda d: payment([(999, 10)]), "-2028", "No matching records found"),
    (lambda d: payment([(d["own"], 10)], card_code="C2000"), "-10", "not a vendor"),
    (lambda d: payment([(d["own"], 10)], card_code="V1009"), "-10", "10001071"),
    (lambda d: payment([(d["own"], 0)], TransferSum=0), "-10", "greater than zero"),
])
def test_vendor_payment_validation(fresh, make_body, code, text):
    docs = {"own": fresh.sim.add_invoice("V1000", [line()])["DocEntry"],
            "other": fresh.sim.add_invoice("V1001", [line()])["DocEntry"],
            "cancelled": fresh.sim.add_invoice("V1000", [line()])["DocEntry"]}
    fresh.sim.cancel_invoice(docs["cancelled"])
    response = fresh.client.post("VendorPayments", make_body(docs))
    assert response.status_code == 400
    assert error_of(response)[0] == code and text in error_of(response)[1], response.text
    assert fresh.sim.entities("VendorPayments") == []
    assert all(inv["PaidToDate"] == 0 for inv in fresh.sim.entities("PurchaseInvoices"))


def test_vendor_payment_cancel_reopens_invoice(fresh):
    doc = fresh.sim.add_invoice("V1000", [line()])["DocEntry"]
    pay = fresh.client.post("VendorPayments", payment([(doc, "108.25")])).json()["DocEntry"]
    assert fresh.sim.entities("PurchaseInvoices")[0]["DocumentStatus"] == "bost_Close"
    assert fresh.client.post(f"VendorPayments({pay})/Cancel").status_code == 204
    cancelled = fresh.client.get(f"VendorPayments({pay})").json()
    assert (cancelled["Cancelled"], cancelled["CancelStatus"]) == ("tYES", "csYes")
    invoice = fresh.client.get(f"PurchaseInvoices({doc})").json()
    assert (invoice["PaidToDate"], invoice["DocumentStatus"]) == (0.0, "bost_Open")
    assert fresh.client.post(f"VendorPayments({pay})/Cancel").status_code == 400
    assert fresh.client.get("VendorPayments?$filter=Cancelled eq 'tNO'").json()["value"] == []
    assert fresh.client.patch(f"VendorPayments({pay})", {"Remarks": "cancelled by test"}).status_code == 204
    assert fresh.client.patch(f"VendorPayments({pay})", {"TransferSum": 1}).status_code == 400


def test_concurrent_payments_never_overpay(fresh):
    doc = fresh.sim.add_invoice("V1000", [line(amount="100.00", tax="EX")])["DocEntry"]
    statuses = []

    def pay(n):
        statuses.append(fresh.client.post("VendorPayments", payment([(doc, "30.00")], CounterReference=f"C{n}"))
                        .status_code)

    threads = [threading.Thread(target=pay, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [201, 201, 201, 400, 400, 400]
    assert fresh.sim.entities("PurchaseInvoices")[0]["PaidToDate"] == Decimal("90.00")


# ------------------------------------------------------------------------------------------------- fault injection

def test_lost_response_changes_state_but_client_sees_connection_error(fresh):
    doc = fresh.sim.add_invoice("V1000", [line()])["DocEntry"]
    fresh.sim.lose_next_response("POST", "VendorPayments")
    with pytest.raises(requests.exceptions.ConnectionError):
        fresh.client.post("VendorPayments", payment([(doc, "20.00")], CounterReference="LOST-1"))
    found = fresh.client.get("VendorPayments?$filter=CounterReference eq 'LOST-1'").json()["value"]
    assert len(found) == 1 and found[0]["TransferSum"] == 20.0
    assert fresh.client.get(f"PurchaseInvoices({doc})").json()["PaidToDate"] == 20.0
    again = fresh.client.post("VendorPayments", payment([(doc, "1.00")], CounterReference="NEXT"))
    assert again.status_code == 201  # rule used up, server still serving


def test_fail_next_injects_error_without_executing(fresh):
    fresh.sim.fail_next("POST", "PurchaseInvoices", 400, -10, "Custom TransactionNotification error")
    body = {"CardCode": "V1000", "DocumentLines": [{"AccountCode": "6100", "LineTotal": 10}]}
    v1 = fresh.client.post("PurchaseInvoices", body)
    assert v1.status_code == 400
    assert v1.json()["error"] == {"code": -10, "message": {"lang": "en-us",
                                                           "value": "Custom TransactionNotification error"}}
    assert fresh.sim.entities("PurchaseInvoices") == []
    fresh.sim.fail_next(None, "Dimensions", 500, 407, "Table definition not found for '@X'", count=2)
    v2 = fresh.client.on(2).get("Dimensions")
    assert v2.status_code == 500 and v2.json()["error"]["code"] == "407"
    assert fresh.client.get("Dimensions").status_code == 500
    assert fresh.client.get("Dimensions").status_code == 200
    assert fresh.client.post("PurchaseInvoices", body).status_code == 201


def test_error_rate_answers_apache_503(shared, client):
    shared[0].error_rate = 1.0
    response = client.get("Dimensions")
    assert response.status_code == 503
    assert response.headers["Content-Type"].startswith("text/html") and "Service Unavailable" in response.text
    shared[0].error_rate = 0.5
    statuses = {client.get("Dimensions").status_code for _ in range(30)}
    assert statuses == {200, 503}


def test_latency_is_applied(shared, client):
    shared[0].latency = 0.2
    started = time.monotonic()
    assert client.get("Dimensions").status_code == 200
    assert time.monotonic() - started >= 0.2
    started = time.monotonic()
    requests.get(f"{shared[1].url}/_sim/stats", timeout=5)
    assert time.monotonic() - started < 0.2  # control endpoints are not delayed


# ------------------------------------------------------------------------------------------------- seeding/control

def test_seed_10000_invoices(fresh):
    started = time.monotonic()
    entries = fresh.sim.seed_invoices(10_000)
    print(f"seeded 10,000 invoices in {time.monotonic() - started:.2f}s")
    assert entries == list(range(1, 10_001))
    assert fresh.sim.seed_invoices(2, seed=42, start_doc_entry=20_000) == [20_000, 20_001]
    assert fresh.client.get("PurchaseInvoices/$count").text == "10002"
    pages, _ = fresh.client.pages("PurchaseInvoices?$select=DocEntry&$filter=DocEntry gt 9700",
                                  headers={"Prefer": "odata.maxpagesize=100"})
    assert sum(len(p) for p in pages) == 302
    other = SapSimulator(clock=FakeClock())
    other.seed_invoices(50)
    assert [r["DocTotal"] for r in other.entities("PurchaseInvoices")] == [
        r["DocTotal"] for r in fresh.sim.entities("PurchaseInvoices")[:50]]  # deterministic


def test_seed_demo_invoices(fresh):
    entries = fresh.sim.seed_demo_invoices()
    invoices = {r["DocEntry"]: r for r in fresh.sim.entities("PurchaseInvoices")}
    demo = [invoices[d] for d in entries]
    assert 18 <= len(demo) <= 25
    assert all(r["CardCode"] != "V1009" for r in invoices.values())
    assert any(x["AccountCode"] == "6900" for r in demo for x in r["DocumentLines"])
    assert any(r["DocCurrency"] == "EUR" and r["CardCode"] == "V1010" for r in demo)
    assert any(x["CostingCode"] == "IT" for r in demo for x in r["DocumentLines"])
    assert any(x["CostingCode"] == "SPLIT50" for r in demo for x in r["DocumentLines"])
    assert any(r["DiscountPercent"] > 0 for r in demo) and any(r["Rounding"] == "tYES" for r in demo)
    assert any(r["DocumentAdditionalExpenses"] for r in demo) and any(len(r["DocumentLines"]) > 1 for r in demo)
    refs = [(r["CardCode"], r["NumAtCard"]) for r in demo]
    assert any(refs.count(ref) == 2 for ref in refs)
    assert sum(r["CancelStatus"] == "csYes" for r in invoices.values()) == 1
    assert sum(r["CancelStatus"] == "csCancellation" for r in invoices.values()) == 1
    assert all(r["DocDate"] <= date(2026, 1, 15) for r in demo)


def test_sim_control_endpoints(fresh):
    url = f"{fresh.server.url}/_sim"
    created = requests.post(f"{url}/invoices", json={"card_code": "V1002", "num_at_card": "API-1", "lines": [
        {"AccountCode": "6100", "LineTotal": "40.00", "TaxCode": "TX5"}]}, timeout=5)
    assert created.status_code == 200 and created.json()["DocTotal"] == 42.0
    seeded = requests.post(f"{url}/seed", json={"count": 5}, timeout=5).json()
    assert seeded == {"created": 5, "first_doc_entry": 2, "last_doc_entry": 6}
    knobs = requests.post(f"{url}/knobs", json={"session_idle_seconds": 5, "expiry_response": "strings"},
                          timeout=5).json()
    assert knobs["expiry_response"] == "strings" and fresh.sim.expiry_response == "strings"
    assert requests.post(f"{url}/knobs", json={"expiry_response": [400, -5002]}, timeout=5).status_code == 400
    assert requests.post(f"{url}/knobs", json={"bogus": 1}, timeout=5).status_code == 400
    requests.post(f"{url}/expire_sessions", timeout=5)
    assert fresh.client.get("Dimensions").status_code == 401
    assert requests.post(f"{url}/invoices/1/cancel", timeout=5).json()["CancelStatus"] == "csCancellation"
    stats = requests.get(f"{url}/stats", timeout=5).json()
    assert stats["login_count"] == 1 and stats["requests_by_path"]["GET Dimensions"] == 1
    assert stats["request_count"] == fresh.sim.request_count == 2


def test_request_counters(fresh):
    fresh.sim.add_invoice("V1000", [line()])
    fresh.client.get("PurchaseInvoices")
    fresh.client.get("PurchaseInvoices(1)")
    fresh.client.post("PurchaseInvoices(1)/Close")
    assert fresh.sim.requests_by_path["GET PurchaseInvoices"] == 1
    assert fresh.sim.requests_by_path["GET PurchaseInvoices(*)"] == 1
    assert fresh.sim.requests_by_path["POST PurchaseInvoices(*)/Close"] == 1
    assert fresh.sim.requests_by_path["POST Login"] == 1
    assert (fresh.sim.request_count, fresh.sim.login_count) == (4, 1)


def test_make_app_sets_knobs():
    sim = make_app(seed=False, latency=0.5, session_idle_seconds=3)
    assert (sim.latency, sim.session_idle_seconds) == (0.5, 3)
    assert sim.entities("BusinessPartners") == []
    with pytest.raises(TypeError):
        make_app(no_such_knob=1)
