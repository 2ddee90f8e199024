"""HTTP transport shared by the SAP and BILL clients: timeouts, TLS trust, connect retries, reporting.

Only connection-level failures are retried here (the request never reached the server, so even a POST is
safe). Everything that depends on what the server said is the vendor client's business.
"""

import hashlib
import http.cookiejar
import os
import tempfile
import time

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from .errors import ResponseLost, TransportError
from .reporting import report_exchange

DEFAULT_TIMEOUT = (5, 60)  # (connect, read) seconds; well under the task timeout


def ca_bundle_path(pem):
    """requests wants a file path for a custom CA: write the PEM once to a private temp file named by its hash."""
    digest = hashlib.sha256(pem.encode()).hexdigest()[:16]
    path = os.path.join(tempfile.gettempdir(), f"ml-connector-ca-{digest}.pem")
    if not os.path.exists(path):
        fd, tmp = tempfile.mkstemp(dir=tempfile.gettempdir())
        with os.fdopen(fd, "w") as fh:
            fh.write(pem)
        os.replace(tmp, path)
    return path


def describe_transport_failure(exc, url):
    """Turn a requests exception into words an operator can act on."""
    text = str(exc)
    if isinstance(exc, requests.exceptions.SSLError):
        if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
            return f"certificate not trusted for {url}: add the server's CA bundle to the connection or fix the certificate"
        return f"TLS handshake with {url} failed: {text[:200]}"
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return f"unreachable host: connecting to {url} timed out"
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return f"no answer from {url} within the timeout"
    if isinstance(exc, requests.exceptions.ConnectionError):
        if any(s in text for s in ("NameResolution", "Name or service not known", "nodename nor servname")):
            return f"unreachable host: the name in {url} does not resolve"
        if any(s in text for s in ("Connection refused", "NewConnectionError", "Failed to establish")):
            return f"unreachable host: nothing accepts connections at {url}"
        return f"connection to {url} was dropped before an answer arrived"
    return f"request to {url} failed: {text[:200]}"


class _NoCookies(http.cookiejar.DefaultCookiePolicy):
    """We send session cookies ourselves; requests' jar mis-scopes SAP's Path-less B1SESSION cookie."""

    def set_ok(self, cookie, request):
        return False


class Transport:
    """A requests.Session with our timeouts and TLS settings that reports each attempt."""

    def __init__(self, *, system, connection_id=None, verify=True, ca_bundle="", timeout=DEFAULT_TIMEOUT):
        self.system = system
        self.connection_id = connection_id
        self.timeout = timeout
        self.session = requests.Session()
        self.session.cookies.set_policy(_NoCookies())
        self.session.max_redirects = 3
        retry = Retry(total=2, connect=2, read=0, status=0, other=0, backoff_factor=0.3, allowed_methods=None)
        adapter = HTTPAdapter(max_retries=retry, pool_connections=4, pool_maxsize=16)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        # Passed on every request: a session-level setting would lose to REQUESTS_CA_BUNDLE in the environment.
        self.verify = False if not verify else (ca_bundle_path(ca_bundle) if ca_bundle else True)
        self.session.verify = self.verify

    def send(self, method, url, *, path, attempt=1, json=None, params=None, headers=None, data=None, report=True):
        """Send one request; return the Response. Raise TransportError / ResponseLost when nothing usable came back."""
        started = time.monotonic()
        try:
            resp = self.session.request(
                method, url, json=json, params=params, headers=headers, data=data, timeout=self.timeout,
                verify=self.verify,
            )
        except requests.RequestException as exc:
            duration = int((time.monotonic() - started) * 1000)
            message = describe_transport_failure(exc, url)
            if report:
                report_exchange(
                    system=self.system, connection_id=self.connection_id, method=method, path=path, status=None,
                    duration_ms=duration, attempt=attempt, request_body=json if json is not None else data,
                    response_body=None, error=message,
                )
            never_sent = isinstance(exc, (requests.exceptions.ConnectTimeout, requests.exceptions.SSLError)) or (
                "NewConnectionError" in str(exc) or "NameResolution" in str(exc)
            )
            if method.upper() != "GET" and not never_sent:
                raise ResponseLost(message, path=path) from exc
            raise TransportError(message, path=path) from exc
        duration = int((time.monotonic() - started) * 1000)
        if report:
            report_exchange(
                system=self.system, connection_id=self.connection_id, method=method, path=path,
                status=resp.status_code, duration_ms=duration, attempt=attempt,
                request_body=json if json is not None else data, response_body=resp.content, error=None,
            )
        return resp

    def close(self):
        self.session.close()
