"""A logging filter that keeps credentials out of log lines (issue 10).

Attached to every handler in settings.LOGGING. It redacts what looks like a secret in the formatted message
(password=…, B1SESSION=…, sessionId/devKey values, user:password@ in URLs) and drops exception locals (none are
logged by the stdlib anyway). Code should never log a secret in the first place; this is the second fence.
"""

import logging
import re

from .clients.reporting import redact

_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@]+@")


def redact_text(text):
    return _URL_USERINFO.sub(r"\1***@", redact(str(text)))


class RedactSecrets(logging.Filter):
    def filter(self, record):
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken log call is not ours to fix here
            return True
        cleaned = redact_text(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True
