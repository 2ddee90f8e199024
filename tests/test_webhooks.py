"""BILL webhook receiver: signature checks, rejection without storage, de-duplication, key rotation."""

import base64
import hashlib
import hmac
import json

import pytest
from django.test import Client

from connector.connections import apply_connection
from connector.models import WebhookEvent
from connector.sandbox import catalog
from connector.webhooks import sign
from tests.conftest import connection_file

KEY = "test-security-key"
OLD_KEY = "old-security-key"


@pytest.fixture
def hook_conn(db):
    conn, _ = apply_connection(connection_file("http://sap.test:50000", "http://bill.test",
                                               bill={"webhook_security_key": KEY}))
    return conn


def event_body(event_id="625947c4-8e6b-48f0-ae72-ea9c9375ec27", event_type="payment.updated", payment_id="stpX"):
    event = {"metadata": {"eventId": event_id, "subscriptionId": "sub", "organizationId": catalog.BILL_ORG_ID,
                          "eventType": event_type, "version": "1"},
             "payment": {"id": payment_id, "billIds": ["00nA"], "status": "PROCESSED"}}
    return json.dumps(event, separators=(",", ":")).encode()


def post(conn, body, signature=None, key=KEY, token=None, content_type="application/json"):
    headers = {}
    if signature is None and key is not None:
        signature = sign(body, key).decode()
    if signature is not None:
        headers["HTTP_X_BILL_SHA_SIGNATURE"] = signature
    return Client().post(f"/webhooks/bill/{token or conn.webhook_token}/", data=body, content_type=content_type, **headers)


@pytest.fixture(autouse=True)
def no_processing(monkeypatch):
    """These tests are about receiving; processing (which talks to BILL and SAP) is tested in test_payments."""
    queued = []
    monkeypatch.setattr("connector.webhooks.enqueue_event", queued.append)
    return queued


def test_signature_matches_the_fact_sheets_test_vectors():
    assert sign(b"The quick brown fox jumps over the lazy dog", "key").decode() == \
        "97yD9DBThCSxMpjmqm+xQ+9NWaFJRhdZl0edvC0aPNg="
    body = (b'{"metadata":{"eventId":"625947c4-8e6b-48f0-ae72-ea9c9375ec27","subscriptionId":"f6d06930-e3e2-4509-be37-'
            b'4dbda29efc6i","organizationId":"00802DEVKGROHKDIY4zyx","eventType":"payment.updated","version":"1"},"payment":'
            b'{"id":"stp01VTFIWRGOUMAVl39","billIds":["00n02JZNIEYMNPY99iz9"],"status":"PROCESSED"}}')
    assert sign(body, "test-security-key").decode() == "YYqNNAD/+iWXhHNJBJPOCarD8/HZ+vMlAk3cq6JY7tA="


def test_a_signed_event_is_stored_once_and_queued(hook_conn, no_processing, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        first = post(hook_conn, event_body())
        again = post(hook_conn, event_body())
    assert first.status_code == 200 and again.status_code == 200 and again.json()["duplicate"]
    assert WebhookEvent.objects.count() == 1
    stored = WebhookEvent.objects.get()
    assert (stored.event_type, stored.entity_id, stored.signed_with) == ("payment.updated", "stpX", "current")
    assert no_processing == [stored.pk]


@pytest.mark.parametrize(
    "case,expected",
    [
        ("missing", 401), ("wrong", 401), ("re-encoded body", 401), ("wrong key", 401), ("not base64", 401),
        ("non-ascii header", 401), ("malformed json", 400), ("not an event", 400), ("deep json", 400),
        ("unknown token", 404), ("oversized", 413),
    ],
)
def test_rejected_requests_store_nothing(hook_conn, no_processing, case, expected):
    body = event_body()
    kwargs = {}
    if case == "missing":
        kwargs = {"key": None}
    elif case == "wrong":
        kwargs = {"signature": base64.b64encode(b"x" * 32).decode()}
    elif case == "re-encoded body":
        signed = sign(body, KEY).decode()
        body = json.dumps(json.loads(body), indent=2).encode()  # same JSON, other bytes
        kwargs = {"signature": signed}
    elif case == "wrong key":
        kwargs = {"key": "someone-elses-key"}
    elif case == "not base64":
        kwargs = {"signature": "%%%not-base64%%%"}
    elif case == "non-ascii header":
        kwargs = {"signature": "sïgnätüre"}
    elif case == "malformed json":
        body = b'{"metadata": {"eventId": '
    elif case == "not an event":
        body = b'{"hello": "world"}'
    elif case == "deep json":
        body = b"[" * 100_000 + b"]" * 100_000
    elif case == "unknown token":
        kwargs = {"token": "no-such-token"}
    elif case == "oversized":
        body = b'{"metadata":{"eventId":"x","eventType":"payment.updated"},"pad":"' + b"a" * (1024 * 1024) + b'"}'
    response = post(hook_conn, body, **kwargs)
    assert response.status_code == expected
    assert WebhookEvent.objects.count() == 0 and no_processing == []


def test_a_json_string_payload_is_decoded_twice(hook_conn):
    body = json.dumps(event_body().decode()).encode()
    assert post(hook_conn, body).status_code == 200
    assert WebhookEvent.objects.get().event_type == "payment.updated"


def test_both_keys_are_accepted_during_rotation(hook_conn):
    hook_conn.bill_webhook_security_key = OLD_KEY
    hook_conn.save()
    hook_conn.bill_webhook_security_key = KEY  # rotated: the old key stays valid for a grace period
    hook_conn.save()
    assert post(hook_conn, event_body("e-new"), key=KEY).status_code == 200
    assert post(hook_conn, event_body("e-old"), key=OLD_KEY).status_code == 200
    assert post(hook_conn, event_body("e-bad"), key="third-key").status_code == 401
    assert dict(WebhookEvent.objects.values_list("event_id", "signed_with")) == {"e-new": "current", "e-old": "previous"}


def test_a_connection_without_a_key_accepts_nothing(db):
    conn, _ = apply_connection(connection_file("http://sap.test:50000", "http://bill.test"))
    body = event_body()
    empty_key_signature = base64.b64encode(hmac.new(b"", body, hashlib.sha256).digest()).decode()
    assert post(conn, body, signature=empty_key_signature).status_code == 401
    assert WebhookEvent.objects.count() == 0


def test_get_is_not_allowed(hook_conn):
    assert Client().get(f"/webhooks/bill/{hook_conn.webhook_token}/").status_code == 405


def test_an_event_wrapped_as_the_resend_api_shape_is_accepted(hook_conn):
    wrapped = json.dumps({"id": "e1", "type": "payment.updated", "payload": event_body("wrapped-1").decode()}).encode()
    assert post(hook_conn, wrapped).status_code == 200
    assert WebhookEvent.objects.get().event_id == "wrapped-1"


def test_the_previous_key_expires_after_its_grace_period(hook_conn, settings):
    from datetime import timedelta

    from django.utils import timezone

    hook_conn.bill_webhook_security_key = "the-next-key"
    hook_conn.save()
    assert hook_conn.bill_webhook_previous_key == KEY
    until = hook_conn.bill_webhook_previous_key_until
    assert until - timezone.now() > timedelta(hours=settings.WEBHOOK_PREVIOUS_KEY_GRACE_HOURS - 1)
    assert post(hook_conn, event_body("e-1"), key=KEY).status_code == 200
    type(hook_conn).objects.filter(pk=hook_conn.pk).update(bill_webhook_previous_key_until=timezone.now())
    assert post(hook_conn, event_body("e-2"), key=KEY).status_code == 401
    assert post(hook_conn, event_body("e-3"), key="the-next-key").status_code == 200


def test_an_event_of_another_organization_is_refused_and_not_stored(hook_conn):
    event = json.loads(event_body("e-other"))
    event["metadata"]["organizationId"] = "00802SOMEONEELSE"
    body = json.dumps(event).encode()
    answer = post(hook_conn, body)
    assert answer.status_code == 400 and "another BILL organization" in answer.json()["error"]
    assert not WebhookEvent.objects.exists()
