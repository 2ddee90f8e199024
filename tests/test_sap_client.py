"""SAP B1 Service Layer client: sessions, re-login, error shapes, paging (unit tests with `responses`)."""

import json
import threading

import pytest
import responses

from connector.clients.errors import SapError, SapLoginFailed, SapNotFound
from connector.clients.reporting import api_exchange
from connector.clients.sap import SapClient
from connector.sessions import MemorySessionStore

BASE = "https://b1.example.test:50000/b1s/v1"
BASE2 = "https://b1.example.test:50000/b1s/v2"


def client(base=BASE, store=None):
    return SapClient(base, "SBO_TEST", "manager", "s3cret-pw", session_store=store or MemorySessionStore())


def add_login(rsps, base=BASE, session="sess-1"):
    rsps.add(
        responses.POST, f"{base}/Login", json={"SessionId": session, "Version": "1000340", "SessionTimeout": 30},
        headers=[("Set-Cookie", f"B1SESSION={session};HttpOnly;"), ("Set-Cookie", "ROUTEID=.node1; path=/b1s")],
    )


def v1_error(code, message, status):
    return {"json": {"error": {"code": code, "message": {"lang": "en-us", "value": message}}}, "status": status}


def v2_error(code, message, status):
    return {"json": {"error": {"code": str(code), "message": message, "details": []}}, "status": status}


@responses.activate
def test_one_login_serves_many_calls_and_cookies_are_sent_by_hand():
    add_login(responses)
    responses.add(responses.GET, f"{BASE}/BusinessPartners('V1')", json={"CardCode": "V1"})
    sap = client()
    for _ in range(5):
        assert sap.get("BusinessPartners('V1')")["CardCode"] == "V1"
    logins = [c for c in responses.calls if c.request.url.endswith("/Login")]
    assert len(logins) == 1
    sent = responses.calls[-1].request.headers["Cookie"]
    assert "B1SESSION=sess-1" in sent and "ROUTEID=.node1" in sent


@responses.activate
def test_session_is_shared_through_the_store_across_client_instances():
    store = MemorySessionStore()
    add_login(responses)
    responses.add(responses.GET, f"{BASE}/Items", json={"value": []})
    client(store=store).get("Items")
    client(store=store).get("Items")
    assert sum(c.request.url.endswith("/Login") for c in responses.calls) == 1


@pytest.mark.parametrize(
    "expired",
    [v1_error(301, "Invalid session or session already timeout.", 401),
     v1_error(-5002, "Invalid session or session already timeout.", 401),
     v1_error(-5002, "Session expired", 400),
     {"body": "", "status": 401}],
    ids=["401-301", "401-5002", "400-5002", "bare-401"],
)
@responses.activate
def test_expired_session_logs_in_again_and_retries_once(expired):
    add_login(responses, session="old")
    add_login(responses, session="new")
    responses.add(responses.GET, f"{BASE}/Items", **expired)
    responses.add(responses.GET, f"{BASE}/Items", json={"value": [1]})
    sap = client()
    assert sap.get("Items") == {"value": [1]}
    assert sum(c.request.url.endswith("/Login") for c in responses.calls) == 2
    assert "B1SESSION=new" in responses.calls[-1].request.headers["Cookie"]


@responses.activate
def test_a_real_5002_validation_error_surfaces_with_sap_message():
    add_login(responses)
    for _ in range(2):
        responses.add(responses.POST, f"{BASE}/PurchaseInvoices", **v1_error(-5002, "Code undefined [OCRD.CardCode]", 400))
    with pytest.raises(SapError) as info:
        client().post("PurchaseInvoices", {"CardCode": "X"})
    assert info.value.code == "-5002"
    assert "Code undefined [OCRD.CardCode]" in str(info.value)
    assert info.value.permanent


@pytest.mark.parametrize("shape,base", [(v1_error, BASE), (v2_error, BASE2)], ids=["v1", "v2"])
@responses.activate
def test_both_error_shapes_become_typed_errors(shape, base):
    add_login(responses, base=base)
    responses.add(responses.GET, f"{base}/Orders(99)", **shape(-2028, "No matching records found (ODBC -2028)", 404))
    responses.add(responses.GET, f"{base}/Orders", **shape(201, "Property 'Foo' is invalid", 400))
    sap = client(base=base)
    with pytest.raises(SapNotFound) as info:
        sap.get("Orders(99)")
    assert (info.value.code, info.value.message) == ("-2028", "No matching records found (ODBC -2028)")
    with pytest.raises(SapError) as info:
        sap.get("Orders")
    assert info.value.code == "201" and "Property 'Foo' is invalid" in str(info.value)


@responses.activate
def test_proxy_error_page_is_a_transient_error():
    add_login(responses)
    responses.add(responses.GET, f"{BASE}/Items", body="<html>Proxy Error</html>", status=502)
    with pytest.raises(SapError) as info:
        client().get("Items")
    assert info.value.status == 502 and not info.value.permanent


@pytest.mark.parametrize(
    "code,words", [(-304, "wrong SAP user name or password"), (-306, "unknown SAP company database SBO_TEST")]
)
@responses.activate
def test_login_failures_say_what_is_wrong(code, words):
    responses.add(responses.POST, f"{BASE}/Login", **v1_error(code, "Fail to NONE-SSO login from SLD.", 401))
    with pytest.raises(SapLoginFailed) as info:
        client().ping()
    assert words in str(info.value)


@pytest.mark.parametrize("key,relative", [("odata.nextLink", True), ("@odata.nextLink", False)])
@responses.activate
def test_paging_follows_next_links_to_the_end(key, relative):
    add_login(responses)
    link = "Items?$skip=2" if relative else "/b1s/v1/Items?$skip=2"
    responses.add(responses.GET, f"{BASE}/Items", json={"value": [1, 2], key: link})
    responses.add(responses.GET, f"{BASE}/Items?$skip=2", json={"value": [3, 4], key: "Items?$skip=4"})
    responses.add(responses.GET, f"{BASE}/Items?$skip=4", json={"value": []})
    rows = list(client().iterate("Items", filter="CardType eq 'cSupplier'", select=["ItemCode"], page_size=2))
    assert rows == [1, 2, 3, 4]
    gets = [c.request for c in responses.calls if c.request.method == "GET"]
    assert all(r.headers["Prefer"] == "odata.maxpagesize=2" for r in gets)
    assert "%24filter=CardType+eq+%27cSupplier%27" in gets[0].url and "%24select=ItemCode" in gets[0].url


@responses.activate
def test_concurrent_expiry_triggers_a_single_login():
    store = MemorySessionStore()
    lock = threading.Lock()
    state = {"valid": "s0", "logins": 0}

    def login(request):
        with lock:
            state["logins"] += 1
            state["valid"] = f"s{state['logins']}"
            sid = state["valid"]
        return 200, {"Set-Cookie": f"B1SESSION={sid};HttpOnly;"}, json.dumps({"SessionTimeout": 30})

    def items(request):
        ok = f"B1SESSION={state['valid']}" in request.headers.get("Cookie", "")
        if ok:
            return 200, {}, json.dumps({"value": []})
        return 401, {}, json.dumps({"error": {"code": 301, "message": {"value": "Invalid session"}}})

    responses.add_callback(responses.POST, f"{BASE}/Login", callback=login)
    responses.add_callback(responses.GET, f"{BASE}/Items", callback=items)
    clients = [client(store=store) for _ in range(6)]
    clients[0].get("Items")  # everyone now shares session s1
    state["valid"] = "expired-by-server"
    threads = [threading.Thread(target=c.get, args=("Items",)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert state["logins"] == 2  # the first login, then exactly one re-login for six workers


@responses.activate
def test_exchanges_are_reported_without_secrets():
    seen = []

    def receiver(sender, exchange, **kw):
        seen.append(exchange)

    api_exchange.connect(receiver)
    try:
        add_login(responses, session="very-secret-session")
        responses.add(responses.GET, f"{BASE}/Items", json={"value": []})
        client().get("Items")
    finally:
        api_exchange.disconnect(receiver)
    assert [(e.method, e.path, e.status) for e in seen] == [("POST", "Login", 200), ("GET", "Items", 200)]
    dumped = json.dumps([e.as_dict() for e in seen], default=str)
    assert "s3cret-pw" not in dumped and "very-secret-session" not in dumped
    assert seen[0].request_body["Password"] == "***"


def test_custom_ca_bundle_is_used_for_verification(tmp_path):
    pem = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"
    sap = SapClient(BASE, "DB", "u", "p", session_store=MemorySessionStore(), ca_bundle=pem)
    with open(sap.transport.session.verify) as fh:
        assert fh.read() == pem
    insecure = SapClient(BASE, "DB", "u", "p", session_store=MemorySessionStore(), verify=False)
    assert insecure.transport.session.verify is False


@responses.activate
def test_a_select_the_server_refuses_is_retried_without_it():
    """Some Service Layers refuse collections such as DocumentLines in $select: read whole entities instead."""
    add_login(responses)
    responses.add(responses.GET, f"{BASE}/PurchaseInvoices", **v1_error(201, "Property 'DocumentLines' is invalid", 400),
                  match=[responses.matchers.query_param_matcher({"$select": "DocEntry,DocumentLines"})])
    responses.add(responses.GET, f"{BASE}/PurchaseInvoices", json={"value": [{"DocEntry": 1, "DocumentLines": []}]},
                  match=[responses.matchers.query_param_matcher({})])
    rows = list(client().iterate("PurchaseInvoices", select=["DocEntry", "DocumentLines"]))
    assert rows == [{"DocEntry": 1, "DocumentLines": []}]
