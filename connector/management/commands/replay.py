"""`manage.py replay NAME [--type invoice|payment|vendor|event] [--status STATUS …] [--record ID …] [--doc-entry N …]`.

Re-runs the failed step of the selected records now, synchronously (not through the task queue), with the
same no-duplicate guarantees as a sync (CONTRACT.md). Without --record/--doc-entry/--status it selects every
record of the type that has something to replay. Nothing to replay is not an error; records that still
fail are listed and the exit code is still 0; 2 on bad input (nothing is changed); 1 when the work could
not be done (a login failed, a system is unreachable, a sync of the connection is running).
"""

import getpass

from audit.replay import (
    NOT_REPLAYED,
    NOTHING_TO_DO,
    REPLAYABLE,
    STILL_FAILING,
    TYPE_NAMES,
    TYPE_WORDS,
    record_models,
    replay_records,
    summary_line,
)

from ._base import BadInputError, OperatorCommand, WorkFailed


def _ints(values, option):
    numbers = []
    for value in values or []:
        for part in str(value).replace(",", " ").split():
            try:
                number = int(part)
            except ValueError:
                raise BadInputError(f"{option}: {part!r} is not a number") from None
            if number <= 0:
                raise BadInputError(f"{option}: {part!r} is not a valid id")
            numbers.append(number)
    return list(dict.fromkeys(numbers))


def _os_user():
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in this environment (container without passwd entry)
        return ""


class Command(OperatorCommand):
    help = "Re-run the failed step of selected records of a connection (never duplicates)."

    def add_arguments(self, parser):
        parser.add_argument("name", help="connection name, or TENANT/NAME")
        parser.add_argument("--type", dest="record_type", default="invoice",
                            help="invoice (default), payment, vendor, event, credit (A/P credit memo) or attachment")
        parser.add_argument("--status", action="append", default=[], metavar="STATUS",
                            help="only records in this status (repeatable, or comma-separated)")
        parser.add_argument("--record", nargs="+", action="extend", default=[], metavar="ID",
                            help="our record ids (the id in the admin)")
        parser.add_argument("--doc-entry", nargs="+", action="extend", default=[], metavar="N",
                            help="invoices only: SAP DocEntry of the invoices")

    def handle(self, *args, name, record_type, status, record, doc_entry, **options):
        conn = self.get_connection(name)
        if record_type not in TYPE_NAMES:
            raise BadInputError(f"--type: unknown type {record_type!r} (one of: {', '.join(TYPE_NAMES)})")
        rtype = TYPE_NAMES[record_type]
        model = record_models()[rtype]
        words = TYPE_WORDS[rtype]
        statuses = self._statuses(model, words, status)
        ids = _ints(record, "--record")
        doc_entries = _ints(doc_entry, "--doc-entry")
        if doc_entries and rtype != "invoicerecord":
            raise BadInputError("--doc-entry: only invoices have an SAP DocEntry (use --record for other types)")

        selection = model.objects.filter(connection=conn)
        if ids or doc_entries:
            chosen = set(self._check_ids(conn, model, words, ids))
            if doc_entries:
                chosen |= set(self._check_doc_entries(conn, model, doc_entries))
            selection = selection.filter(pk__in=sorted(chosen))
        if statuses:
            selection = selection.filter(status__in=statuses)
        elif not (ids or doc_entries):
            selection = selection.filter(status__in=REPLAYABLE[rtype])
        selection = selection.order_by("pk")

        count = selection.count()
        if not count:
            self.stdout.write(f"replay {conn}: no {words} records selected: nothing to replay")
            return
        self.stdout.write(f"replay {conn}: {count} {words} record{'s' if count != 1 else ''}")
        position = {"n": 0}

        def progress(outcome):
            position["n"] += 1
            words = {NOTHING_TO_DO: "nothing to replay: ", NOT_REPLAYED: "not replayed: "}.get(outcome.result, "")
            self.stdout.write(f"  [{position['n']}/{count}] {outcome.label}: {words}{outcome.message}")

        summary = replay_records(selection, actor=_os_user(), trigger="replay", progress=progress)
        failing = [item for item in summary["failing"] if item["result"] == STILL_FAILING]
        if failing:
            self.stdout.write("still failing:")
            for item in failing:
                self.stdout.write(f"  {item['label']}: {item['message']}")
        if summary["errors"]:
            for error in summary["errors"]:
                self.stderr.write(f"{error['connection']}: {error['error']}")
            raise WorkFailed(f"replay not done for {summary['not_replayed']} record(s): {summary['errors'][0]['error']}")
        if not summary["replayed"]:
            self.stdout.write("done: nothing to replay")
            return
        self.stdout.write(f"done: {summary_line(summary)}")

    @staticmethod
    def _statuses(model, words, given):
        wanted = [part.strip() for value in given for part in value.split(",") if part.strip()]
        known = [value for value, _ in model.Status.choices]
        for value in wanted:
            if value not in known:
                raise BadInputError(f"--status: unknown {words} status {value!r} (one of: {', '.join(known)})")
        return list(dict.fromkeys(wanted))

    @staticmethod
    def _check_ids(conn, model, words, ids):
        found = dict(model.objects.filter(pk__in=ids).values_list("pk", "connection_id"))
        for pk in ids:
            if pk not in found:
                raise BadInputError(f"--record: there is no {words} record {pk}")
            if found[pk] != conn.pk:
                raise BadInputError(f"--record: {words} record {pk} belongs to another connection, not {conn}")
        return ids

    @staticmethod
    def _check_doc_entries(conn, model, doc_entries):
        found = dict(model.objects.filter(connection=conn, doc_entry__in=doc_entries).values_list("doc_entry", "pk"))
        missing = [n for n in doc_entries if n not in found]
        if missing:
            raise BadInputError(f"--doc-entry: {conn} has no invoice with SAP DocEntry {missing[0]}")
        return list(found.values())
