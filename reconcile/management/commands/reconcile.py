"""`manage.py reconcile NAME [--since DATE] [--csv FILE] [--strict]` (CONTRACT.md).

Prints progress, then `reconciled: N invoices, M bills, P payments: D differences` and one line per
difference. Exit 0 even with differences unless --strict (then 1); 1 when a side could not be read; 2 on bad input.
"""

from datetime import date

from connector.management.commands._base import BadInputError, OperatorCommand, WorkFailed
from reconcile.csvexport import write_csv
from reconcile.models import ReconciliationRun
from reconcile.service import AlreadyReconciling, difference_line, reconcile


class Command(OperatorCommand):
    help = "Compare SAP and BILL for one connection (invoices ↔ bills, payments, open totals)."

    def add_arguments(self, parser):
        parser.add_argument("name", help="connection name, or TENANT/NAME")
        parser.add_argument("--since", help="YYYY-MM-DD: SAP invoices updated (and BILL bills/payments created) "
                                            "since this day; default: the connection's sync_from")
        parser.add_argument("--csv", dest="csv_file", help="also write the differences to this CSV file")
        parser.add_argument("--strict", action="store_true", help="exit 1 when there are differences")

    def handle(self, *args, name, since, csv_file, strict, **options):
        conn = self.get_connection(name)
        day = None
        if since:
            try:
                day = date.fromisoformat(since)
            except ValueError:
                raise BadInputError(f"--since: {since!r} is not a date (YYYY-MM-DD)") from None
        csv_handle = None
        if csv_file:
            try:
                csv_handle = open(csv_file, "w", newline="", encoding="utf-8")  # noqa: SIM115 - closed below
            except OSError as exc:
                raise BadInputError(f"--csv: cannot write {csv_file}: {exc.strerror}") from None
        try:
            self.stdout.write(f"reconcile {conn} since {day or conn.sync_from}")
            try:
                run = reconcile(conn, since=day, trigger="cli", out=self.stdout.write)
            except AlreadyReconciling as exc:
                raise WorkFailed(str(exc)) from None
            if run.status == ReconciliationRun.Status.FAILED:
                raise WorkFailed(f"reconcile failed: {run.error.splitlines()[-1] if run.error else 'see the run'}")
            differences = list(run.differences.order_by("kind", "card_code", "sap_ref", "bill_ref"))
            self.stdout.write(f"open amount: SAP {run.sap_open} / BILL {run.bill_open}"
                              + (f"; {run.summary.get('held')} invoices held or skipped (not billed on purpose)"
                                 if run.summary.get("held") else ""))
            self.stdout.write(f"reconciled: {run.invoices} invoices, {run.bills} bills, {run.payments} payments: "
                              f"{run.difference_count} differences")
            for d in differences:
                self.stdout.write(difference_line(d))
            if csv_handle:
                write_csv(csv_handle, differences)
        finally:
            if csv_handle:
                csv_handle.close()
        if strict and run.difference_count:
            raise WorkFailed(f"{run.difference_count} differences (--strict)")
