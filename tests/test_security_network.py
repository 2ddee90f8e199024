"""Issue 10: outbound requests cannot be pointed at the host's own network.

Real sockets on loopback (the guard works at connect time, so `responses` would bypass it): a redirect, an
`odata.nextLink` to another server, and names resolving to loopback / private / link-local / metadata addresses
are refused; `allow_private_network` (operator-only) lets a connection reach loopback and private ranges, never
cloud metadata.
"""

import json
import os
import socket
import stat
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from connector.clients import http as transport
from connector.clients.bill import BillClient
from connector.clients.errors import SapError, TransportError
from connector.clients.sap import SapClient
from connector.sessions import MemorySessionStore


class Recorder:
    """A tiny HTTP server on loopback answering with `answer(handler) -> (status, headers, body)`; records requests."""

    def __init__(self, answer):
        self.requests = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                recorder.requests.append({"method": self.command, "path": self.path, "headers": dict(self.headers),
                                          "body": body})
                status, headers, payload = answer(self)
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                data = json.dumps(payload).encode() if payload is not None else b""
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = _any

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def servers():
    made = []

    def make(answer):
        server = Recorder(answer)
        made.append(server)
        return server

    yield make
    for server in made:
        server.stop()


def sap_login_ok(handler):
    if handler.path.endswith("/Login"):
        return 200, {"Set-Cookie": "B1SESSION=sess-1; HttpOnly"}, {"SessionId": "sess-1", "SessionTimeout": 30}
    return None


def sap(url, allow=True, **kw):
    return SapClient(f"{url}/b1s/v1", "SBO", "manager", "sap-pw-secret", session_store=MemorySessionStore(),
                     allow_private_network=allow, timeout=(2, 5), **kw)


def bill(url, allow=True):
    class NoLimiter:
        import contextlib

        @contextlib.contextmanager
        def slot(self, key, limit, **kw):
            yield "t"

    return BillClient(f"{url}/connect", "ap@x", "bill-pw-secret", "008ORG", "dev-key-secret",
                      session_store=MemorySessionStore(), limiter=NoLimiter(), allow_private_network=allow,
                      timeout=(2, 5))


# --- redirects ---------------------------------------------------------------------------------------------------
def test_a_redirect_to_the_metadata_service_is_not_followed(servers):
    redirecting = servers(lambda h: (302, {"Location": "http://169.254.169.254/latest/meta-data/iam/"}, None))
    with pytest.raises(TransportError) as caught:
        sap(redirecting.url).login()
    assert "follows no redirects" in str(caught.value) and "169.254.169.254" in str(caught.value)
    assert len(redirecting.requests) == 1


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_bill_secrets_never_follow_a_redirect_even_to_an_allowed_server(servers, status):
    target = servers(lambda h: (200, {}, {"sessionId": "stolen"}))
    redirecting = servers(lambda h: (status, {"Location": f"{target.url}/connect/v3/login"}, None))
    with pytest.raises(TransportError):
        bill(redirecting.url).login()
    assert target.requests == []  # neither devKey, sessionId nor the password went anywhere else
    assert len(redirecting.requests) == 1


def test_a_same_origin_redirect_is_refused_too_and_says_where_it_pointed(servers):
    redirecting = servers(lambda h: (301, {"Location": "/b1s/v2/Login"}, None))
    with pytest.raises(TransportError) as caught:
        sap(redirecting.url).login()
    assert "127.0.0.1" in str(caught.value) and caught.value.permanent


# --- nextLink ----------------------------------------------------------------------------------------------------
def test_next_link_to_another_server_is_refused(servers):
    other = servers(lambda h: (200, {}, {"value": [{"Code": "stolen"}]}))

    def answer(handler):
        return sap_login_ok(handler) or (200, {}, {
            "value": [{"Code": "1000"}], "odata.nextLink": f"{other.url}/b1s/v1/ChartOfAccounts?$skip=1"})

    sap_server = servers(answer)
    rows = []
    with pytest.raises(SapError) as caught:
        for row in sap(sap_server.url).iterate("ChartOfAccounts"):
            rows.append(row)
    assert rows == [{"Code": "1000"}] and other.requests == []
    assert "another server" in str(caught.value)


@pytest.mark.parametrize("link", ["ChartOfAccounts?$skip=1", "/b1s/v1/ChartOfAccounts?$skip=1", "SAME"])
def test_next_link_on_the_same_server_is_followed(servers, link):
    pages = []

    def answer(handler):
        if sap_login_ok(handler):
            return sap_login_ok(handler)
        pages.append(handler.path)
        if "skip" in handler.path:
            return 200, {}, {"value": [{"Code": "2000"}]}
        next_link = link if link != "SAME" else f"http://127.0.0.1:{handler.server.server_address[1]}/b1s/v1/" \
                                                 "ChartOfAccounts?$skip=1"
        return 200, {}, {"value": [{"Code": "1000"}], "odata.nextLink": next_link}

    server = servers(answer)
    assert [r["Code"] for r in sap(server.url).iterate("ChartOfAccounts")] == ["1000", "2000"]


def test_next_link_with_another_port_or_scheme_is_refused(servers):
    def answer(handler):
        port = handler.server.server_address[1]
        return sap_login_ok(handler) or (200, {}, {
            "value": [], "@odata.nextLink": f"https://127.0.0.1:{port}/b1s/v1/ChartOfAccounts?$skip=1"})

    with pytest.raises(SapError):
        list(sap(servers(answer).url).iterate("ChartOfAccounts"))


# --- private, loopback, link-local, metadata ---------------------------------------------------------------------
def test_loopback_is_refused_without_the_operator_override(servers):
    server = servers(lambda h: sap_login_ok(h) or (200, {}, {"value": []}))
    with pytest.raises(TransportError) as caught:
        sap(server.url, allow=False).login()
    assert "loopback" in str(caught.value) and "allow_private_network" in str(caught.value)
    assert server.requests == []  # refused before connecting
    sap(server.url, allow=True).login()  # the override
    assert len(server.requests) == 1


@pytest.fixture
def fake_dns(monkeypatch):
    """Names of our choosing resolve to addresses of our choosing (the first lookup only, then elsewhere)."""
    table = {}
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kw):
        if host in table:
            answers = table[host]
            ip = answers.pop(0) if len(answers) > 1 else answers[0]
            family = socket.AF_INET6 if ":" in ip else socket.AF_INET
            return [(family, socket.SOCK_STREAM, 6, "", (ip, port) if family == socket.AF_INET else (ip, port, 0, 0))]
        return real(host, port, *args, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return table


@pytest.mark.parametrize("address,allowed_with_override", [
    ("10.1.2.3", True), ("192.168.1.10", True), ("172.16.0.9", True), ("127.0.0.1", True), ("100.64.1.1", True),
    ("169.254.169.254", False), ("169.254.1.1", False), ("fd00:ec2::254", False), ("100.100.100.200", False),
    ("0.0.0.0", False), ("::ffff:169.254.169.254", False), ("fe80::1", False),
])
def test_names_resolving_to_non_public_addresses(fake_dns, address, allowed_with_override):
    fake_dns["sap.customer.example"] = [address]
    assert transport.address_problem(address, allow_private=False)
    assert bool(transport.address_problem(address, allow_private=True)) is not allowed_with_override
    with pytest.raises(TransportError) as caught:
        sap("http://sap.customer.example:50000", allow=False).login()
    assert "refused to connect" in str(caught.value)


def test_public_addresses_pass():
    for address in ("8.8.8.8", "52.1.2.3", "2606:4700::1111"):
        assert transport.address_problem(address) == ""


def test_metadata_names_are_refused_even_with_the_override():
    for url in ("http://metadata.google.internal", "http://metadata.google.internal.", "http://METADATA"):
        with pytest.raises(TransportError) as caught:
            sap(url, allow=True).login()
        assert "metadata" in str(caught.value)


def test_the_resolved_address_is_checked_at_connect_time(servers, fake_dns):
    """DNS rebinding: the name resolves to a harmless address at first, then to loopback. Every connection checks
    the address it really connects to, and connects to exactly that address."""
    server = servers(lambda h: sap_login_ok(h) or (200, {}, {"value": []}))
    fake_dns["rebind.example"] = ["127.0.0.1"]
    with pytest.raises(TransportError):
        sap(f"http://rebind.example:{server.port}", allow=False).login()
    assert server.requests == []
    client = sap(f"http://rebind.example:{server.port}", allow=True)
    client.login()
    assert server.requests[0]["headers"]["Host"] == f"rebind.example:{server.port}"


def test_connection_file_sets_the_override_and_clients_use_it(db):
    from connector.connections import apply_connection
    from tests.conftest import connection_file

    conn, _ = apply_connection(connection_file("http://sap.test:50000", "http://bill.test"))
    assert conn.allow_private_network and SapClient.for_connection(conn).transport.allow_private_network
    data = connection_file("http://sap.test:50000", "http://bill.test")
    del data["allow_private_network"]
    conn, _ = apply_connection(data)  # applying is declarative: without the key, the override is off
    assert not conn.allow_private_network
    assert not BillClient.for_connection(conn).transport.allow_private_network


# --- URLs with credentials, CA bundles -----------------------------------------------------------------------------
@pytest.mark.parametrize("section,url", [
    ("sap", "https://manager:pw@b1.example:50000/b1s/v1"), ("bill", "https://u:p@gateway.stage.bill.com/connect"),
])
def test_urls_with_user_and_password_are_refused_on_input(db, section, url):
    from connector.connections import BadInput, apply_connection
    from tests.conftest import connection_file

    with pytest.raises(BadInput) as caught:
        apply_connection(connection_file("http://sap.test:50000", "http://bill.test", **{section: {"base_url": url}}))
    assert "user:password@" in str(caught.value) and ":pw@" not in str(caught.value) and "u:p@" not in str(caught.value)


def test_urls_are_redacted_in_messages():
    assert transport.redact_url("https://user:hunter2@h.example/x") == "https://***@h.example/x"
    words = transport.describe_transport_failure(Exception("boom"), "https://user:hunter2@h.example/x")
    assert "hunter2" not in words


def test_ca_bundle_goes_to_a_private_file_another_user_cannot_plant(tmp_path, monkeypatch):
    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    import hashlib
    import tempfile

    # The old scheme's predictable name, planted by someone else: never used.
    planted = os.path.join(tempfile.gettempdir(), f"ml-connector-ca-{hashlib.sha256(pem.encode()).hexdigest()[:16]}.pem")
    path = transport.ca_bundle_path(pem)
    assert path != planted and open(path).read() == pem
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    assert transport.ca_bundle_path(pem) == path  # written once per process


def test_ipv6_literals_are_checked_too():
    with pytest.raises(TransportError) as caught:
        sap("http://[::1]:50000", allow=False).login()
    assert "loopback" in str(caught.value)
    with pytest.raises(TransportError) as caught:
        sap("http://[fd00:ec2::254]", allow=True).login()
    assert "metadata" in str(caught.value)
