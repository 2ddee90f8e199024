"""Connections: the connection file, secrets at rest, `connection apply|list|ping`, the admin's test action."""

import json

import pytest
from django.core.management import call_command
from django.db import connection as db_connection

from connector.connections import BadInput, apply_connection, find_connection, ping_connection
from connector.fields import SecretUnreadable
from connector.models import Connection
from tests.conftest import connection_file


def run_cli(*args):
    """Run a management command like a shell would: (exit code, stdout, stderr)."""
    import io

    out, err = io.StringIO(), io.StringIO()
    try:
        call_command(*args, stdout=out, stderr=err)
        code = 0
    except SystemExit as exc:
        code = exc.code
    except Exception as exc:  # CommandError carries the exit code the shell would see
        from django.core.management import CommandError

        if not isinstance(exc, CommandError):
            raise
        err.write(str(exc))
        code = exc.returncode
    return code, out.getvalue(), err.getvalue()


@pytest.mark.django_db
def test_secrets_are_encrypted_at_rest_and_fail_loudly_with_a_wrong_key():
    conn, created = apply_connection(connection_file("http://sap.test:50000", "http://bill.test"))
    assert created
    with db_connection.cursor() as cursor:
        cursor.execute(
            "SELECT sap_password, bill_password, bill_dev_key FROM connector_connection WHERE id = %s", [conn.pk]
        )
        raw = cursor.fetchone()
    for value, plain in zip(raw, ("1234", "demo-password", "sandbox-dev-key"), strict=True):
        assert plain not in value and value.startswith("gAAAA")
    assert Connection.objects.get(pk=conn.pk).sap_password == "1234"
    with db_connection.cursor() as cursor:
        from cryptography.fernet import Fernet

        foreign = Fernet(Fernet.generate_key()).encrypt(b"other-key-secret").decode()
        cursor.execute("UPDATE connector_connection SET sap_password = %s WHERE id = %s", [foreign, conn.pk])
    with pytest.raises(SecretUnreadable, match="FIELD_ENCRYPTION_KEY"):
        Connection.objects.get(pk=conn.pk)


@pytest.mark.django_db
def test_apply_updates_by_tenant_and_name():
    data = connection_file("http://sap.test:50000", "http://bill.test")
    first, created = apply_connection(data)
    data["sap"]["company_db"] = "SBO_OTHER"
    second, created_again = apply_connection(data)
    assert created and not created_again and first.pk == second.pk
    assert Connection.objects.get(pk=first.pk).sap_company_db == "SBO_OTHER"


@pytest.mark.parametrize(
    "change,words",
    [
        ({"colour": "red"}, "unknown key colour"),
        ({"sap": {"base_url": "https://b1.example:50000/api"}}, "sap.base_url"),
        ({"sap": {"verify_tls": "yes"}}, "sap.verify_tls must be true or false"),
        ({"bill": {"dev_key": ""}}, "missing required key bill.dev_key"),
        ({"bill": {"secret": "x"}}, "unknown key bill.secret"),
        ({"schedule": {"minutes": 0}}, "schedule.minutes"),
        ({"schedule": {"cron": "every tuesday"}}, "schedule.cron"),
        ({"sync_from": "yesterday"}, "sync_from"),
    ],
)
@pytest.mark.django_db
def test_bad_connection_files_name_the_field_and_change_nothing(change, words):
    data = connection_file("http://sap.test:50000", "http://bill.test", **change)
    with pytest.raises(BadInput, match=words):
        apply_connection(data)
    assert not Connection.objects.exists()


@pytest.mark.django_db
def test_cli_apply_list_and_exit_codes(tmp_path):
    path = tmp_path / "conn.json"
    path.write_text(json.dumps(connection_file("http://sap.test:50000", "http://bill.test")))
    code, out, _ = run_cli("connection", "apply", str(path))
    assert code == 0 and "created connection demo/demo-sandbox" in out and "/webhooks/bill/" in out
    assert "1234" not in out and "demo-password" not in out
    code, out, _ = run_cli("connection", "list")
    assert code == 0 and "demo-sandbox" in out and "never" in out
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert run_cli("connection", "apply", str(bad))[0] == 2
    assert run_cli("connection", "ping", "nope")[0] == 2


@pytest.mark.django_db
def test_tenant_slash_name_picks_one_of_two_same_names():
    for tenant in ("acme", "globex"):
        apply_connection(connection_file("http://sap.test:50000", "http://bill.test", tenant=tenant, name="prod"))
    with pytest.raises(Exception, match="use TENANT/NAME"):
        find_connection("prod")
    assert find_connection("globex/prod").tenant.slug == "globex"


@pytest.mark.django_db(transaction=True)
def test_ping_ok_on_both_sides(conn):
    code, out, _ = run_cli("connection", "ping", "demo-sandbox")
    assert code == 0, out
    assert out.splitlines()[0].startswith("sap: ok") and out.splitlines()[1].startswith("bill: ok")


@pytest.mark.django_db(transaction=True)
def test_ping_explains_failures_in_plain_words(sap_sim, bill_sim):
    cases = [
        ({"sap": {"password": "wrong"}}, "sap", "wrong SAP user name or password"),
        ({"sap": {"company_db": "SBO_NOPE"}}, "sap", "unknown SAP company database SBO_NOPE"),
        ({"sap": {"base_url": "http://127.0.0.1:9/b1s/v1"}}, "sap", "unreachable host"),
        ({"sap": {"base_url": f"https://127.0.0.1:{sap_sim.url.rsplit(':', 1)[1]}/b1s/v1"}}, "sap", "TLS"),
        ({"bill": {"password": "wrong"}}, "bill", "wrong BILL user name or password"),
        ({"bill": {"dev_key": "not-a-key"}}, "bill", "developer key is not valid"),
    ]
    for n, (change, side, words) in enumerate(cases):
        conn, _ = apply_connection(connection_file(sap_sim.url, bill_sim.url, name=f"case-{n}", **change))
        results = ping_connection(conn)
        ok, message = results[side]
        assert not ok and words in message, (change, message)
        other = "bill" if side == "sap" else "sap"
        assert results[other][0], results[other]
    code, out, _ = run_cli("connection", "ping", "case-0")
    assert code == 1 and "sap: failed: wrong SAP user name or password" in out


@pytest.mark.django_db(transaction=True)
def test_untrusted_certificate_is_reported_as_such(tmp_path, sap_sim, bill_sim):
    import ssl
    import subprocess
    import threading

    from werkzeug.serving import make_server

    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = make_server("127.0.0.1", 0, sap_sim, threaded=True, ssl_context=context)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"https://127.0.0.1:{server.server_port}"
        conn, _ = apply_connection(connection_file(base, bill_sim.url, name="tls"))
        ok, message = ping_connection(conn)["sap"]
        assert not ok and "certificate not trusted" in message
        # With the server's CA in the connection, the same server is trusted.
        conn, _ = apply_connection(connection_file(base, bill_sim.url, name="tls", sap={"ca_bundle": cert.read_text()}))
        result = ping_connection(conn)["sap"]
        assert result[0], result
    finally:
        server.shutdown()


@pytest.mark.django_db
def test_optional_extras_of_the_connection_file():
    conn, _ = apply_connection(connection_file(
        "http://sap.test:50000", "http://bill.test", enabled=False,
        sap={"invoice_filter": "U_Approved eq 'Y'", "cancel_payment_on_void": True, "verify_tls": False}))
    assert (conn.enabled, conn.invoice_extra_filter, conn.cancel_sap_payment_on_void, conn.sap_verify_tls) == (
        False, "U_Approved eq 'Y'", True, False)
    assert conn.bill_events_url == "http://bill.test/connect-events"
    with pytest.raises(BadInput, match="sap.cancel_payment_on_void must be true or false"):
        apply_connection(connection_file("http://sap.test:50000", "http://bill.test",
                                         sap={"cancel_payment_on_void": "yes"}))


@pytest.mark.django_db(transaction=True)
def test_new_credentials_are_used_at_once_not_the_stored_session(conn):
    from connector.models import RemoteSession
    from connector.sync.runner import run_sync

    assert run_sync(conn, ["reference"]).status == "ok"
    assert set(RemoteSession.objects.filter(connection=conn).values_list("system", flat=True)) == {"sap", "bill"}
    data = connection_file(conn.sap_base_url.rsplit("/b1s", 1)[0], conn.bill_base_url.rsplit("/connect", 1)[0],
                           sap={"password": "wrong"})
    conn, _ = apply_connection(data)
    assert list(RemoteSession.objects.filter(connection=conn).values_list("system", flat=True)) == ["bill"]
    run = run_sync(conn, ["reference"])
    assert run.status == "failed" and "wrong SAP user name or password" in run.error


@pytest.mark.django_db
def test_applying_a_file_is_declarative_for_optional_keys():
    """A key removed from the file goes back to its default (the webhook security key excepted)."""
    conn, _ = apply_connection(connection_file(
        "http://sap.test:50000", "http://bill.test", enabled=False, schedule={"cron": "0 * * * *"},
        sap={"verify_tls": False, "invoice_filter": "U_OK eq 'Y'"}, bill={"webhook_security_key": "k1"}))
    conn, _ = apply_connection(connection_file("http://sap.test:50000", "http://bill.test"))
    got = (conn.enabled, conn.sap_verify_tls, conn.invoice_extra_filter, conn.schedule_cron, conn.schedule_minutes)
    assert got == (True, True, "", "", 15)
    assert conn.bill_webhook_security_key == "k1"
    conn, _ = apply_connection(connection_file("http://sap.test:50000", "http://bill.test",
                                               bill={"webhook_security_key": "k2"}))
    assert (conn.bill_webhook_security_key, conn.bill_webhook_previous_key) == ("k2", "k1")


@pytest.mark.parametrize("tenant", ["acme/eu", "acme eu", ""])
@pytest.mark.django_db
def test_tenant_must_be_a_slug(tenant):
    with pytest.raises(BadInput, match="tenant"):
        apply_connection(connection_file("http://sap.test:50000", "http://bill.test", tenant=tenant))
