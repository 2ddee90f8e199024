"""`manage.py connection apply FILE.json | list | ping NAME` (see CONTRACT.md)."""

import json

from connector.connections import apply_connection, ping_connection, webhook_url
from connector.models import Connection
from connector.status import connection_overview

from ._base import BadInputError, OperatorCommand, WorkFailed


class Command(OperatorCommand):
    help = "Create/update, list and check customer connections."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        apply_p = sub.add_parser("apply", help="create or update a connection from a JSON file")
        apply_p.add_argument("file")
        sub.add_parser("list", help="one line per connection")
        ping_p = sub.add_parser("ping", help="log in to SAP and BILL")
        ping_p.add_argument("name")

    def handle(self, *args, action, **options):
        getattr(self, f"do_{action}")(**options)

    def do_apply(self, file, **_):
        try:
            with open(file, encoding="utf-8") as fh:
                data = json.load(fh)
        except OSError as exc:
            raise BadInputError(f"cannot read {file}: {exc.strerror}") from None
        except ValueError as exc:
            raise BadInputError(f"{file} is not valid JSON: {exc}") from None
        conn, created = apply_connection(data)
        self.stdout.write(f"{'created' if created else 'updated'} connection {conn}")
        self.stdout.write(f"webhook URL: {webhook_url(conn)}")

    def do_list(self, **_):
        conns = Connection.objects.select_related("tenant").order_by("tenant__slug", "name")
        if not conns:
            self.stdout.write("no connections yet (create one with `connection apply FILE.json`)")
            return
        self.stdout.write(f"{'tenant':<16} {'name':<24} {'enabled':<8} {'last sync':<22} counts")
        for conn in conns:
            info = connection_overview(conn)
            last = info["last_sync"]
            last_text = f"{last.started_at:%Y-%m-%d %H:%M} {last.status}" if last else "never"
            counts = " ".join(f"{k}={v}" for k, v in info["counts"].items()) or "-"
            lag = info["schedule"]
            counts += f" behind={lag['behind_minutes']}m backlog={lag['backlog']}"  # how far behind its schedule
            self.stdout.write(
                f"{conn.tenant.slug:<16} {conn.name:<24} {'yes' if conn.enabled else 'no':<8} {last_text:<22} {counts}"
            )

    def do_ping(self, name, **_):
        conn = self.get_connection(name)
        results = ping_connection(conn)
        for side in ("sap", "bill"):
            ok, words = results[side]
            self.stdout.write(f"{side}: ok {words}" if ok else f"{side}: failed: {words}")
        if not all(ok for ok, _ in results.values()):
            raise WorkFailed("ping failed")
