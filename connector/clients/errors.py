"""Typed errors raised by the SAP and BILL clients.

Each carries the remote system's own code and message, and says whether trying again can help
(`permanent`), so the sync engine can decide between "retry later" and "a person must fix this".
"""


class RemoteError(Exception):
    """The remote system answered with an error, or could not be reached."""

    system = "remote"
    permanent = True

    def __init__(self, message, *, status=None, code=None, path=None, problems=None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.path = path
        # Every problem the remote system listed ([{code, message, ...}]); BILL sends one entry per problem.
        self.problems = problems or []

    @property
    def refused(self):
        """A request the remote system refused as invalid (400, or BILL's 422 for duplicates and validations)."""
        return self.status in (400, 422)

    def __str__(self):
        parts = [self.message]
        if self.code not in (None, "") and f"({self.code})" not in self.message:
            parts.append(f"(code {self.code})")
        if self.status:
            parts.append(f"[HTTP {self.status}]")
        return " ".join(parts)


class TransportError(RemoteError):
    """No usable answer: host unreachable, TLS failure, timeout."""

    permanent = False


class ResponseLost(TransportError):
    """A write was sent but no answer came back: it may or may not have been applied. Look it up, never re-send blindly."""


class SapError(RemoteError):
    system = "sap"


class SapLoginFailed(SapError):
    """Wrong user/password (-304) or unknown company database (-306)."""


class SapSessionExpired(SapError):
    permanent = False


class SapNotFound(SapError):
    pass


class BillError(RemoteError):
    system = "bill"


class BillLoginFailed(BillError):
    """BDC_1101 wrong user/password, BDC_1102 wrong developer key."""


class BillSessionExpired(BillError):
    permanent = False


class BillRateLimited(BillError):
    """BDC_1322: too many concurrent requests for this organization, still after backing off."""

    permanent = False


class BillHourlyLimit(BillError):
    """BDC_1144: the developer key used up its hourly request budget; no calls until `until`."""

    permanent = False

    def __init__(self, message, *, until=None, **kw):
        super().__init__(message, **kw)
        self.until = until


class BillNotFound(BillError):
    """404, e.g. BDC_1205: no object with that id."""


class BillUntrustedSession(BillError):
    """403 BDC_1361 "Untrusted session.": BILL wants 2-step-verification trust; a re-login does not fix it."""
