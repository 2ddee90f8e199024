"""Errors as the real SAP Service Layer and BILL send them (api-facts-addendum §3, §9), client unit tests."""

import pytest
import responses

from connector.clients.errors import SapError, SapSessionExpired
from connector.clients.sap import SapClient, explain_sap_error, is_session_error
from connector.sessions import MemorySessionStore

BASE = "https://b1.example.test:50000/b1s/v1"
BASE2 = "https://b1.example.test:50000/b1s/v2"


def sap_client(base=BASE):
    return SapClient(base, "SBO_TEST", "manager", "pw", session_store=MemorySessionStore())


def add_login(rsps, base=BASE, session="sess-1"):
    rsps.add(responses.POST, f"{base}/Login", json={"SessionId": session, "SessionTimeout": 30},
             headers=[("Set-Cookie", f"B1SESSION={session};HttpOnly;")])


def logins():
    return sum(c.request.url.endswith("/Login") for c in responses.calls)


# --- SAP: session expiry (401 / 301) vs -5002 validation ----------------------------------------------------------
EXPIRY_SHAPES = {
    "v1-number-object": (BASE, {"error": {"code": 301, "message": {
        "lang": "en-us", "value": "Invalid session or session already timeout."}}}),
    "v1-string-string": (BASE, {"error": {"code": "301", "message": "Invalid session or session already timeout."}}),
    "v2-string-string": (BASE2, {"error": {"code": "301", "message": "Invalid session or session already timeout.",
                                           "details": []}}),
}


@pytest.mark.parametrize("shape", sorted(EXPIRY_SHAPES))
@responses.activate
def test_expiry_in_every_real_shape_logs_in_again_once(shape):
    base, body = EXPIRY_SHAPES[shape]
    add_login(responses, base, "old")
    add_login(responses, base, "new")
    responses.add(responses.POST, f"{base}/VendorPayments", json=body, status=401)
    responses.add(responses.POST, f"{base}/VendorPayments", json={"DocEntry": 7}, status=201)
    assert sap_client(base).post("VendorPayments", {"CardCode": "V1"}) == {"DocEntry": 7}
    assert logins() == 2


@pytest.mark.parametrize("base", [BASE, BASE2], ids=["v1", "v2"])
@responses.activate
def test_validation_5002_costs_no_login_and_no_retried_write(base):
    """A bad payment account: SAP answers 400 -5002 "Code undefined [OVPM.TrsfrAcct]". Before the fix the client took
    it for an expired session: a second login and the write sent twice."""
    add_login(responses, base)
    body = ({"error": {"code": -5002, "message": {"lang": "en-us", "value": "Code undefined [OVPM.TrsfrAcct]"}}}
            if base == BASE else {"error": {"code": "-5002", "message": "Code undefined [OVPM.TrsfrAcct]", "details": []}})
    responses.add(responses.POST, f"{base}/VendorPayments", json=body, status=400)
    responses.add(responses.POST, f"{base}/VendorPayments", json={"DocEntry": 7}, status=201)
    with pytest.raises(SapError) as info:
        sap_client(base).post("VendorPayments", {"CardCode": "V1", "TransferAccount": "9999"})
    assert logins() == 1
    assert sum(c.request.url.endswith("/VendorPayments") for c in responses.calls) == 1
    err = info.value
    assert err.permanent and not isinstance(err, SapSessionExpired) and err.code == "-5002"
    text = str(err)
    assert "Code undefined [OVPM.TrsfrAcct]" in text  # SAP's own words
    assert "payment account" in text and "payment_account" in text  # and what to fix


@responses.activate
def test_5002_that_speaks_of_the_session_is_still_an_expiry():
    add_login(responses, BASE, "old")
    add_login(responses, BASE, "new")
    responses.add(responses.GET, f"{BASE}/Items", json={"error": {"code": -5002, "message": {
        "lang": "en-us", "value": "Session expired, please log on again"}}}, status=400)
    responses.add(responses.GET, f"{BASE}/Items", json={"value": []})
    assert sap_client().get("Items") == {"value": []}
    assert logins() == 2


@pytest.mark.parametrize("status,code,message,expected", [
    (401, "301", "Invalid session or session already timeout.", True),
    (401, None, "", True),
    (400, "301", "Invalid session", True),
    (400, "-5002", "Code undefined [OVPM.TrsfrAcct]", False),
    (400, "-5002", "Specify an active branch [OVPM.BPLId]", False),
    (400, "-5002", "The attachments folder is not defined, or it has been changed or removed.", False),
    (400, "-5002", "Invalid session or session already timeout.", True),
    (400, "-5002", "Logon required", True),
    (400, "-10", "session", False),
])
def test_session_error_rule(status, code, message, expected):
    assert is_session_error(status, code, message) is expected


@pytest.mark.parametrize("message,words", [
    ("Code undefined [OVPM.TrsfrAcct]", "payment account"),
    ("Code undefined  [OCRD.CardCode]", "supplier"),
    ("Specify an active branch [OVPM.BPLId]", "branch"),
    ("Enter valid code  [ItemWarehouseInfoCollection.WarehouseCode] , 'A0096'", "WarehouseCode"),
    ("Internal error (-5002) occurred", "Internal error (-5002) occurred"),
])
def test_sap_validation_messages_in_plain_words(message, words):
    text = explain_sap_error("-5002", message)
    assert message.strip() in text or " ".join(message.split()) in text
    assert words in text


# --- BILL: error arrays, 403 BDC_1361, 404 BDC_1205, 422 ------------------------------------------------------------
BILL = "https://gateway.stage.bill.com/connect"


class _Limiter:
    from contextlib import contextmanager

    @contextmanager
    def slot(self, key, limit, **kw):
        yield "token"


def bill_client():
    from connector.clients.bill import BillClient

    return BillClient(BILL, "ap@example.test", "pw", "008ORG", "dev-key", session_store=MemorySessionStore(),
                      limiter=_Limiter())


def add_bill_login(session="sid-1"):
    responses.add(responses.POST, f"{BILL}/v3/login", json={"organizationId": "008ORG", "sessionId": session})


def bill_logins():
    return sum(c.request.url.endswith("/v3/login") for c in responses.calls)


THREE_FIELD_ERRORS = [
    {"timestamp": "2025-10-03T05:22:09.613+00:00", "code": None, "severity": "ERROR", "category": "REQUEST",
     "message": "vendorId: must not be null", "params": {}},
    {"timestamp": "2025-10-03T05:22:09.613+00:00", "severity": "ERROR", "message": "dueDate: must not be null"},
    {"timestamp": "2025-10-03T05:22:09.613+00:00", "code": "BDC_1119", "severity": "ERROR", "category": "REQUEST",
     "message": "invoice.invoiceNumber: must not be blank", "params": [{"name": "field", "value": "invoiceNumber"}]},
]


@responses.activate
def test_every_entry_of_a_bill_error_array_is_kept_and_shown():
    """Before the fix only the first entry survived: two of three reasons were lost."""
    from connector.clients.errors import BillError

    add_bill_login()
    responses.add(responses.POST, f"{BILL}/v3/bills", json=THREE_FIELD_ERRORS, status=400)
    with pytest.raises(BillError) as info:
        bill_client().post("/v3/bills", {})
    err = info.value
    text = str(err)
    for message in ("vendorId: must not be null", "dueDate: must not be null", "invoice.invoiceNumber: must not be blank"):
        assert message in text
    assert [p["message"] for p in err.problems] == [e["message"] for e in THREE_FIELD_ERRORS]
    assert err.code == "BDC_1119" and err.permanent and err.status == 400


@responses.activate
def test_untrusted_session_is_not_a_relogin_and_says_what_to_do():
    from connector.clients.errors import BillUntrustedSession

    add_bill_login()
    add_bill_login("sid-2")
    responses.add(responses.POST, f"{BILL}/v3/payments", status=403, json=[
        {"timestamp": "2025-10-02T17:56:51.933+00:00", "code": "BDC_1361", "severity": "ERROR",
         "category": "DOWNSTREAM", "message": "Untrusted session.", "params": {}}])
    with pytest.raises(BillUntrustedSession) as info:
        bill_client().post("/v3/payments", {})
    assert bill_logins() == 1
    assert "Untrusted session." in str(info.value) and "2-step verification" in str(info.value)
    assert info.value.permanent


@responses.activate
def test_unknown_id_404_bdc_1205_is_not_found():
    from connector.clients.errors import BillNotFound

    add_bill_login()
    responses.add(responses.GET, f"{BILL}/v3/bills/00nNOPE", status=404, json=[
        {"code": "BDC_1205", "severity": "ERROR", "message": "No data found for object with given ID"}])
    with pytest.raises(BillNotFound) as info:
        bill_client().get("/v3/bills/00nNOPE")
    assert info.value.code == "BDC_1205"


@responses.activate
def test_422_refusals_are_refusals_like_400():
    from connector.clients.errors import BillError

    add_bill_login()
    responses.add(responses.POST, f"{BILL}/v3/payments", status=422, json=[
        {"timestamp": "2026-08-21T21:19:50.992+00:00", "code": "BDC_1152", "severity": "ERROR",
         "category": "DOWNSTREAM", "message": "Invalid Process Date : ${paramName0}."},
        {"timestamp": "2026-08-21T21:19:50.992+00:00", "code": "BDC_1152", "severity": "ERROR",
         "category": "DOWNSTREAM", "message": "00n02YCLZFIWZX3ruxj4 : Invalid Process Date : ${paramName0}."}])
    with pytest.raises(BillError) as info:
        bill_client().post("/v3/payments", {})
    err = info.value
    assert err.refused and err.permanent and len(err.problems) == 2
    assert "00n02YCLZFIWZX3ruxj4" in str(err)


@pytest.mark.parametrize("body,expected", [
    ([{"message": "email: must not be blank"}], ["email: must not be blank"]),
    ({"code": "BDC_1109", "message": "Session is invalid.  Please log in."}, ["Session is invalid.  Please log in."]),
    ([], []),
    ({"response_status": 1, "response_data": {"error_code": "BDC_1158", "error_message": "Vendor payment address is not valid."}},
     ["Vendor payment address is not valid."]),
])
def test_bill_error_bodies_in_every_shape(body, expected):
    from connector.clients.bill import bill_error_entries

    class Resp:
        status_code = 400
        text = ""

        def json(self):
            return body

    assert [e["message"] for e in bill_error_entries(Resp())] == expected
