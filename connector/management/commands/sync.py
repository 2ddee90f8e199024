"""`manage.py sync NAME [--step reference|vendors|bills|payments] [--dry-run]` (CONTRACT.md)."""

from connector.sync.runner import STEPS, AlreadyRunning, run_sync

from ._base import OperatorCommand, WorkFailed


class Command(OperatorCommand):
    help = "Run one sync cycle of a connection now (all steps in order unless --step)."

    def add_arguments(self, parser):
        parser.add_argument("name", help="connection name, or TENANT/NAME")
        parser.add_argument("--step", choices=STEPS, action="append", help="run only this step (repeatable)")
        parser.add_argument("--dry-run", action="store_true", help="show what would be written; write nothing")

    def handle(self, *args, name, step, dry_run, **options):
        conn = self.get_connection(name)
        steps = step or list(STEPS)
        self.stdout.write(f"sync {conn}: {', '.join(steps)}{' (dry run: nothing is written)' if dry_run else ''}")
        try:
            run = run_sync(conn, steps, trigger="cli", dry_run=dry_run, out=self.stdout.write)
        except AlreadyRunning as exc:
            raise WorkFailed(str(exc)) from None
        if run.status == run.Status.FAILED:
            raise WorkFailed(f"sync failed: {run.error.splitlines()[-1] if run.error else 'see the sync run'}")
        self._list_problems(conn, run)
        self.stdout.write(f"done: {run.get_status_display()} in {(run.finished_at - run.started_at).total_seconds():.1f}s")

    def _list_problems(self, conn, run):
        """Failed, held and flagged records of the steps that ran, with what to do (and the id `replay` takes)."""
        from connector.models import InvoiceRecord, PaymentRecord
        from mappings.models import VendorLink

        steps = set(run.steps.split(","))
        if run.dry_run:
            return
        lines = []
        if steps & {"vendors", "bills"}:
            for v in VendorLink.objects.filter(connection=conn, status__in=["review", "failed", "invalid"])[:50]:
                lines.append(f"  vendor {v.card_code} (record {v.pk}) [{v.status}]: {v.last_error}")
        if "bills" in steps:
            for r in InvoiceRecord.objects.filter(
                    connection=conn, status__in=["held", "failed", "flagged"]).order_by("doc_entry")[:50]:
                lines.append(f"  invoice {r.doc_num} (record {r.pk}, DocEntry {r.doc_entry}, {r.card_code}) "
                             f"[{r.status}]: {r.last_error}")
        if "payments" in steps:
            for p in PaymentRecord.objects.filter(connection=conn, status__in=["failed", "flagged"])[:50]:
                lines.append(f"  payment {p.bill_payment_id} (record {p.pk}, {p.card_code or '-'}) [{p.status}]: "
                             f"{p.last_error}")
        if lines:
            self.stdout.write("records that need attention (replay takes the record number):")
            self.stdout.write("\n".join(lines))
