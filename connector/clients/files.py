"""Files over both clients, streamed: an SAP attachment download and a BILL bill-document upload.

Neither body ever sits in memory whole: the download is written to a file in 64 KB chunks (and stopped as soon as
it passes the size limit), the upload is read from that file by requests as it sends. Both go through the
clients' own guarded transport (no redirects, checked addresses, TLS settings), their sessions (one re-login on an
expired session), and for BILL the organization's request slots and hourly budget, like every other call. Each
attempt is reported as an API exchange without its body (files are not kept in the audit trail).
"""

import time
from urllib.parse import urlsplit

import requests

from .errors import ResponseLost, TransportError
from .http import describe_transport_failure
from .reporting import report_exchange

CHUNK = 64 * 1024


class TooLarge(Exception):
    def __init__(self, size, limit):
        super().__init__(f"{size} bytes, over {limit}")
        self.size, self.limit = size, limit


def _report(transport, method, path, status, started, attempt, error=None, note=None):
    report_exchange(system=transport.system, connection_id=transport.connection_id, method=method, path=path,
                    status=status, duration_ms=int((time.monotonic() - started) * 1000), attempt=attempt,
                    request_body=None, response_body=note, error=error)


def _request(transport, method, url, path, attempt, **kw):
    started = time.monotonic()
    try:
        transport._check_url(url)
        resp = transport.session.request(method, url, timeout=transport.timeout, verify=transport.verify,
                                         allow_redirects=False, **kw)
    except requests.RequestException as exc:
        message = describe_transport_failure(exc, url)
        _report(transport, method, path, None, started, attempt, error=message)
        if method != "GET":
            raise ResponseLost(message, path=path) from exc
        raise TransportError(message, path=path) from exc
    if resp.is_redirect or resp.status_code in (301, 302, 303, 307, 308):
        resp.close()
        _report(transport, method, path, resp.status_code, started, attempt, error="redirect refused")
        raise TransportError(f"{transport.system.upper()} answered HTTP {resp.status_code} (a redirect): refused",
                             status=resp.status_code, path=path)
    return resp, started


def sap_download(sap, path, params, dest, limit):
    """Stream SAP's `path` (e.g. Attachments2(7)/$value) into the open binary file `dest`; return its size.
    Raise TooLarge past `limit` bytes, or the client's SapError for an SAP error answer."""
    from .sap import is_session_error, parse_sap_error

    sap._ensure_session()
    url = sap._url(path)
    for attempt in (1, 2):
        resp, started = _request(sap.transport, "GET", url, path, attempt, params=params, stream=True,
                                 headers=sap._headers({"Accept": "*/*"}))
        with resp:
            if resp.status_code < 400:
                size = 0
                dest.seek(0)
                dest.truncate()
                for chunk in resp.iter_content(CHUNK):
                    size += len(chunk)
                    if size > limit:
                        _report(sap.transport, "GET", path, resp.status_code, started, attempt,
                                note=f"stopped after {size} bytes: over {limit}")
                        raise TooLarge(size if not resp.headers.get("Content-Length") else
                                       int(resp.headers["Content-Length"]), limit)
                    dest.write(chunk)
                dest.flush()
                _report(sap.transport, "GET", path, resp.status_code, started, attempt, note=f"{size} bytes")
                sap.store.touch()
                return size
            resp.content  # noqa: B018  an error answer is small JSON: read it whole
            _report(sap.transport, "GET", path, resp.status_code, started, attempt, note=resp.text[:2000])
            code, message = parse_sap_error(resp)
            expired = is_session_error(resp.status_code, code, message)
            if expired and attempt == 1:
                sap.login(stale_generation=sap._generation)
                continue
            raise sap._error(resp.status_code, code, message, path, expired)
    raise AssertionError("unreachable")


def bill_upload(bill, path, params, fileobj, size, content_type="application/octet-stream"):
    """POST the open binary file to BILL's `path` as the raw body; return the parsed JSON answer."""
    from .bill import SESSION_INVALID, bill_error_entries, bill_error_text

    bill._ensure_session()
    url = f"{bill.base_url}{path}"
    short = urlsplit(url).path
    for attempt in (1, 2):
        if bill.hourly is not None and bill.hourly.blocked_until():
            from .errors import BillHourlyLimit

            raise BillHourlyLimit("BILL hourly request limit reached for this developer key", path=path)
        bill.spend("request")
        fileobj.seek(0)
        with bill.limiter.slot(bill.limiter_key, bill.max_in_flight):
            headers = bill._headers(extra={"Content-Type": content_type, "Content-Length": str(size)})
            resp, started = _request(bill.transport, "POST", url, short, attempt, params=params, data=fileobj,
                                     headers=headers)
        _report(bill.transport, "POST", short, resp.status_code, started, attempt,
                note=f"{size} bytes sent; answer: {resp.text[:2000]}")
        if resp.status_code < 400:
            bill.store.touch()
            return resp.json() if resp.content else None
        entries = bill_error_entries(resp)
        code, message = bill_error_text(entries)
        if (resp.status_code == 401 or code == SESSION_INVALID) and attempt == 1:
            bill.login(stale_generation=bill._generation)
            continue
        bill._raise_for_limits(resp, code, message)
        error = bill._error(resp.status_code, code, message, path, attempt > 1)
        error.problems = entries
        raise error
    raise AssertionError("unreachable")
