"""The sync engine: one module per flow (vendors, bills, payments), run in order by runner.py."""


def chunks_by_pk(queryset, size):
    """The rows of `queryset` in lists of `size`, by primary key (keyset: never the whole set in memory, and rows
    changed meanwhile are neither skipped nor repeated)."""
    last = 0
    while True:
        chunk = list(queryset.filter(pk__gt=last).order_by("pk")[:size])
        if not chunk:
            return
        last = chunk[-1].pk
        yield chunk


class SyncStep:
    """What every step of a cycle works with: the connection, both clients, the dry-run switch, where progress
    lines go, the SyncRun it belongs to (if any) and its summary counts."""

    summary_keys = ()

    def __init__(self, connection, sap, bill, *, dry_run=False, out=None, run=None):
        self.connection = connection
        self.sap = sap
        self.bill = bill
        self.dry_run = dry_run
        self.out = out or (lambda line: None)
        self.sync_run = run
        self.summary = dict.fromkeys(self.summary_keys, 0)
        self._lease = None

    @property
    def lease(self):
        """The lease this step claims records under: its cycle's (or replay's), else one of its own."""
        from connector import leases

        if self._lease is None or self._lease.released:
            self._lease = leases.current() or leases.own(self)
        return self._lease
