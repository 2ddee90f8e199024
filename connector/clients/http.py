"""HTTP transport shared by the SAP and BILL clients: timeouts, TLS trust, connect retries, reporting.

Only connection-level failures are retried here (the request never reached the server, so even a POST is
safe). Everything that depends on what the server said is the vendor client's business.
"""

import atexit
import hashlib
import http.cookiejar
import ipaddress
import os
import shutil
import socket
import tempfile
import threading
import time
from urllib.parse import urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util.connection import create_connection
from urllib3.util.retry import Retry

from .errors import ResponseLost, TransportError
from .reporting import report_exchange

DEFAULT_TIMEOUT = (5, 60)  # (connect, read) seconds; well under the task timeout

# --- where our workers may connect (issue 10) ---------------------------------------------------------------------
# A customer controls their SAP server and its DNS; nothing it says may make us fetch from the host's own network.
METADATA_HOSTS = {"metadata.google.internal", "metadata.goog", "metadata", "instance-data", "instance-data.ec2.internal",
                  "metadata.azure.internal", "metadata.tencentyun.com", "metadata.packet.net"}
METADATA_ADDRESSES = {ipaddress.ip_address(a) for a in (
    "169.254.169.254", "169.254.170.2", "169.254.169.253", "fd00:ec2::254", "fd00:ec2::23", "100.100.100.200",
    "192.0.0.192")}
SHARED_ADDRESS_SPACE = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT, used by some VPNs


class BlockedAddress(Exception):
    """The destination is on a network this connection may not reach."""


class RedirectRefused(TransportError):
    """The server answered with a redirect; we follow none (a redirect could point anywhere, secrets included)."""

    permanent = True


def redact_url(url):
    """The URL with any user:password@ replaced by ***@ (for messages)."""
    try:
        parts = urlsplit(str(url))
    except ValueError:
        return "(unreadable URL)"
    if "@" not in parts.netloc:
        return str(url)
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]))


def origin(url):
    """(scheme, host, port) with the default port filled in, for same-origin checks."""
    parts = urlsplit(url)
    scheme = (parts.scheme or "").lower()
    try:
        port = parts.port
    except ValueError:
        port = -1
    return scheme, (parts.hostname or "").lower().rstrip("."), port or {"http": 80, "https": 443}.get(scheme)


def address_problem(ip, allow_private=False):
    """Why we may not connect to `ip` ('' when we may). Loopback and private ranges only with allow_private;
    link-local (169.254/16, fe80::/10), cloud metadata and unusable addresses never."""
    ip = ipaddress.ip_address(ip.split("%", 1)[0] if isinstance(ip, str) else ip)
    if ip.version == 6 and (ip.ipv4_mapped or ip.sixtofour):
        ip = ip.ipv4_mapped or ip.sixtofour
    if ip in METADATA_ADDRESSES:
        return f"{ip} is a cloud metadata address"
    if ip.is_link_local:
        return f"{ip} is a link-local address"
    if ip.is_multicast or ip.is_unspecified:
        return f"{ip} is not a usable server address"
    if ip.is_loopback:  # (before is_reserved: ::1 is in a reserved block)
        return "" if allow_private else f"{ip} is a loopback address"
    if ip.is_reserved:
        return f"{ip} is not a usable server address"
    if allow_private:
        return ""
    if ip.is_private or (ip.version == 4 and ip in SHARED_ADDRESS_SPACE) or not ip.is_global:
        return f"{ip} is a private address"
    return ""


def check_destination(host, addresses, allow_private=False):
    """Raise BlockedAddress when `host` or any address it resolved to may not be reached."""
    name = (host or "").lower().rstrip(".").strip("[]")
    if name in METADATA_HOSTS:
        raise BlockedAddress(f"{host} is a cloud metadata service")
    for ip in addresses:
        problem = address_problem(ip, allow_private)
        if problem:
            hint = "" if allow_private or "metadata" in problem or "link-local" in problem or "usable" in problem else (
                " (a host operator can allow private addresses for this connection: allow_private_network)")
            raise BlockedAddress(f"refused to connect to {host}: {problem}{hint}")


def resolve(host, port):
    """Every address `host` resolves to (a literal IP resolves to itself)."""
    host = host.strip("[]")  # an IPv6 literal from a URL
    return list(dict.fromkeys(info[4][0] for info in socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)))


class _GuardedConnectionMixin:
    """Resolves the name itself, checks every address, then connects to a checked address: the name cannot be
    re-resolved to somewhere else between the check and the connect (DNS rebinding)."""

    allow_private = False

    def _new_conn(self):
        try:
            addresses = resolve(self._dns_host, self.port)
        except socket.gaierror as e:
            raise NameResolutionError(self.host, self, e) from e
        check_destination(self.host, addresses, self.allow_private)
        error = None
        for ip in addresses[:3]:
            try:
                return create_connection((ip, self.port), self.timeout, source_address=self.source_address,
                                         socket_options=self.socket_options)
            except TimeoutError as e:
                error = ConnectTimeoutError(self, f"Connection to {self.host} timed out. (connect timeout={self.timeout})")
                error.__cause__ = e
            except OSError as e:
                error = NewConnectionError(self, f"Failed to establish a new connection: {e}")
                error.__cause__ = e
        raise error


def _guarded_pools(allow_private):
    http_conn = type("GuardedHTTPConnection", (_GuardedConnectionMixin, HTTPConnection), {"allow_private": allow_private})
    https_conn = type("GuardedHTTPSConnection", (_GuardedConnectionMixin, HTTPSConnection),
                      {"allow_private": allow_private})
    return {
        "http": type("GuardedHTTPConnectionPool", (HTTPConnectionPool,), {"ConnectionCls": http_conn}),
        "https": type("GuardedHTTPSConnectionPool", (HTTPSConnectionPool,), {"ConnectionCls": https_conn}),
    }


GUARDED_POOLS = {allow: _guarded_pools(allow) for allow in (False, True)}


class GuardedAdapter(HTTPAdapter):
    """An HTTPAdapter whose direct connections go only where the connection's network policy allows."""

    def __init__(self, *args, allow_private=False, **kwargs):
        self.allow_private = allow_private
        super().__init__(*args, **kwargs)

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = GUARDED_POOLS[self.allow_private]

    def __setstate__(self, state):  # (pickling keeps the policy)
        self.allow_private = state.get("allow_private", False)
        super().__setstate__(state)


# --- custom CA bundles -------------------------------------------------------------------------------------------
_ca_lock = threading.Lock()
_ca_dir = None
_ca_paths = {}


def _private_ca_dir():
    """A directory only this process's user can enter, with an unguessable name (made once per process)."""
    global _ca_dir
    if _ca_dir is None or not os.path.isdir(_ca_dir):
        _ca_dir = tempfile.mkdtemp(prefix="ml-connector-ca-")  # mode 0700
        atexit.register(shutil.rmtree, _ca_dir, True)
    return _ca_dir


def ca_bundle_path(pem):
    """requests wants a file path for a custom CA: the PEM is written once per process into a private directory
    (another local user can neither pre-create nor replace the file)."""
    digest = hashlib.sha256(pem.encode()).hexdigest()
    with _ca_lock:
        path = _ca_paths.get(digest)
        if path is None or not os.path.exists(path):
            fd, path = tempfile.mkstemp(dir=_private_ca_dir(), suffix=".pem")  # O_EXCL, mode 0600
            with os.fdopen(fd, "w") as fh:
                fh.write(pem)
            _ca_paths[digest] = path
    return path


def describe_transport_failure(exc, url):
    """Turn a requests exception into words an operator can act on."""
    url = redact_url(url)
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

    def __init__(self, *, system, connection_id=None, verify=True, ca_bundle="", timeout=DEFAULT_TIMEOUT,
                 allow_private_network=False):
        self.system = system
        self.connection_id = connection_id
        self.timeout = timeout
        self.allow_private_network = allow_private_network
        self.session = requests.Session()
        self.session.cookies.set_policy(_NoCookies())
        self.session.max_redirects = 1  # (unused: every request says allow_redirects=False; 0 would make requests raise)
        retry = Retry(total=2, connect=2, read=0, status=0, other=0, backoff_factor=0.3, allowed_methods=None)
        adapter = GuardedAdapter(max_retries=retry, pool_connections=4, pool_maxsize=16,
                                 allow_private=allow_private_network)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        # Passed on every request: a session-level setting would lose to REQUESTS_CA_BUNDLE in the environment.
        self.verify = False if not verify else (ca_bundle_path(ca_bundle) if ca_bundle else True)
        self.session.verify = self.verify

    def send(self, method, url, *, path, attempt=1, json=None, params=None, headers=None, data=None, report=True):
        """Send one request; return the Response. Raise TransportError / ResponseLost when nothing usable came back."""
        started = time.monotonic()
        try:
            self._check_url(url)
            resp = self.session.request(
                method, url, json=json, params=params, headers=headers, data=data, timeout=self.timeout,
                verify=self.verify, allow_redirects=False,
            )
        except BlockedAddress as exc:
            if report:
                report_exchange(
                    system=self.system, connection_id=self.connection_id, method=method, path=path, status=None,
                    duration_ms=0, attempt=attempt, request_body=None, response_body=None, error=str(exc),
                )
            raise TransportError(str(exc), path=path) from None
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
        if resp.is_redirect or resp.status_code in (301, 302, 303, 307, 308):
            where = resp.headers.get("Location", "")
            target = "{}://{}".format(*origin(requests.compat.urljoin(url, where))[:2]) if where else "(no Location)"
            raise RedirectRefused(
                f"{self.system.upper()} answered HTTP {resp.status_code} redirecting to {redact_url(target)}: "
                "ml-connector follows no redirects; put the address the server really answers on in the connection",
                status=resp.status_code, path=path)
        return resp

    def _check_url(self, url):
        """Before sending: only http(s), no user:password@, no metadata names; and, when a proxy would carry the
        request (the adapter's connect-time check then sees only the proxy), the resolved addresses."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise BlockedAddress(f"refused to request {redact_url(url)}: only http and https URLs with a host")
        if "@" in parts.netloc:
            raise BlockedAddress(f"refused to request {redact_url(url)}: user:password@ in a URL")
        check_destination(parts.hostname, [], self.allow_private_network)
        if requests.utils.get_environ_proxies(url) if self.session.trust_env else False:
            try:
                addresses = resolve(parts.hostname, parts.port or 443)
            except socket.gaierror:
                return  # the proxy resolves it (or reports that it cannot)
            check_destination(parts.hostname, addresses, self.allow_private_network)

    def close(self):
        self.session.close()
