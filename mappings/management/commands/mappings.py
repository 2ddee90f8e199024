"""`manage.py mappings import NAME FILE.csv` / `mappings export NAME [--output FILE]` (CONTRACT.md)."""

from connector.clients.bill import BillClient
from connector.clients.errors import RemoteError
from connector.clients.sap import SapClient
from connector.management.commands._base import BadInputError, OperatorCommand, WorkFailed
from mappings.csvio import MappingImportError, export_csv, import_csv
from mappings.reference import reference_loaded, refresh_reference


class Command(OperatorCommand):
    help = "Import or export GL-account and cost-center mappings as CSV."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        imp = sub.add_parser("import", help="load mappings from CSV (all-or-nothing)")
        imp.add_argument("name")
        imp.add_argument("file")
        exp = sub.add_parser("export", help="write mappings as CSV")
        exp.add_argument("name")
        exp.add_argument("--output", "-o", help="file to write (default: standard output)")

    def handle(self, *args, action, name, **options):
        conn = self.get_connection(name)
        if action == "export":
            return self._export(conn, options.get("output"))
        return self._import(conn, options["file"])

    def _export(self, conn, output):
        if output:
            with open(output, "w", encoding="utf-8", newline="") as fh:
                count = export_csv(conn, fh)
            self.stderr.write(f"wrote {count} mappings to {output}")
        else:
            export_csv(conn, self.stdout)

    def _import(self, conn, path):
        try:
            with open(path, encoding="utf-8-sig", newline="") as fh:
                text = fh.read()
        except OSError as exc:
            raise BadInputError(f"cannot read {path}: {exc.strerror}") from None
        except UnicodeDecodeError as exc:
            raise BadInputError(f"{path} is not UTF-8 text (byte {exc.start}): save the CSV as UTF-8 and import again") from None
        if not reference_loaded(conn):
            self.stdout.write("reference data never loaded: fetching it from SAP and BILL first")
            try:
                refresh_reference(conn, SapClient.for_connection(conn), BillClient.for_connection(conn))
            except RemoteError as exc:
                raise WorkFailed(f"could not fetch reference data: {exc}") from None
        try:
            counts = import_csv(conn, text)
        except MappingImportError as exc:
            for error in exc.errors:
                self.stderr.write(error)
            raise BadInputError(f"nothing imported: {len(exc.errors)} row(s) with errors") from None
        self.stdout.write(
            f"imported: {counts['account']} account and {counts['department']} department mappings changed, "
            f"{counts['unchanged']} unchanged"
        )
