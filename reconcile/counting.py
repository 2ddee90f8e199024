"""Count the HTTP requests one piece of work sends (per connection, per thread), from the exchange signal."""

import contextlib
import threading
from collections import Counter

from connector.clients.reporting import api_exchange


@contextlib.contextmanager
def counting_requests(connection_id):
    """Yields a Counter {"sap": n, "bill": n} of the attempts this thread sends for this connection."""
    counts = Counter()
    me = threading.get_ident()

    def receiver(sender=None, exchange=None, **kwargs):
        if threading.get_ident() == me and getattr(exchange, "connection_id", None) == connection_id:
            counts[exchange.system] += 1

    api_exchange.connect(receiver, weak=False, dispatch_uid=f"reconcile-count-{connection_id}-{me}")
    try:
        yield counts
    finally:
        api_exchange.disconnect(dispatch_uid=f"reconcile-count-{connection_id}-{me}")
