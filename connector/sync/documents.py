"""SAP invoice attachments → BILL bill documents (`sync NAME --step documents`; in every cycle after bills).

For a billed invoice with an `AttachmentEntry`, `Attachments2(n)` lists its files (one AttachmentRecord each);
each file is downloaded from SAP (`Attachments2(n)/$value?filename='<name>.<ext>'`) into a temporary file and
uploaded from it to its bill (`POST /v3/documents/bills/{billId}?name=`, raw bytes): memory stays flat, one file at
a time. BILL finishes uploads asynchronously: an `0du…` upload id is kept and `upload-status` is polled until the
`00h…` document exists.

Exactly once without idempotency keys: the bill's documents are listed before its first upload (a file of that
name already there is adopted), the upload id is stored the moment BILL answers, and a file whose upload answer
was lost is looked for again (list, by name) before it is sent again; since an upload still in progress may not be
listed yet, that second look waits UPLOAD_GRACE after the lost attempt.

A file never holds the bill (the bill exists before its documents). What did not go is on the file's record, in
words: over BILL's 6 MB, a type BILL does not take, a file SAP cannot find, SAP's attachments folder unreachable.
Failed files are retried by the next runs; refused ones (size, type, missing) wait for a person, and replaying the
invoice (or `replay NAME --type attachment`) retries only its files.
"""

import os
import tempfile
from datetime import timedelta

from django.db.models import F, Q
from django.utils import timezone

from audit import trail
from audit.models import AuditEvent
from connector.clients.errors import BillError, BillNotFound, RemoteError, ResponseLost, SapError
from connector.clients.files import TooLarge, bill_upload, sap_download
from connector.models import AttachmentRecord, InvoiceRecord

from . import SyncStep, chunks_by_pk

Status = AttachmentRecord.Status
MAX_BYTES = 6 * 1024 * 1024  # BILL: 6 MB per bill document (addendum §1)
# BILL's list of supported types was not found (addendum §1): PDF and images are certain, office files likely.
SUPPORTED = {"pdf", "png", "jpg", "jpeg", "gif", "tif", "tiff", "doc", "docx", "xls", "xlsx", "csv", "txt"}
UPLOAD_GRACE = timedelta(seconds=int(os.environ.get("ML_DOCUMENT_UPLOAD_GRACE_SECONDS", "300")))
MAX_AUTO_ATTEMPTS = 5
CHUNK = 100
STATUS_BATCH = 50


class DocumentSync(SyncStep):
    summary_keys = ("listed", "uploaded", "adopted", "processing", "refused", "failed", "busy")

    def run(self, only_ids=None):
        if only_ids is None:
            self.discover()
        self.upload(only_ids)
        self.poll()
        return self.summary

    # --- which files -----------------------------------------------------------------------------------------
    def discover(self):
        """AttachmentRecords for the files of billed invoices whose attachment entry was not listed yet."""
        base = InvoiceRecord.objects.filter(connection=self.connection).exclude(bill_id="").filter(
            document__AttachmentEntry__isnull=False).only("pk", "document", "bill_id", "doc_num")
        for chunk in chunks_by_pk(base, CHUNK):
            known = set(AttachmentRecord.objects.filter(invoice__in=chunk).values_list("invoice_id", "attachment_entry"))
            for invoice in chunk:
                entry = (invoice.document or {}).get("AttachmentEntry")
                if not entry or (invoice.pk, int(entry)) in known:
                    continue
                try:
                    with trail.about(invoice):
                        listing = self.sap.get(f"Attachments2({int(entry)})")
                except RemoteError as exc:
                    self.out(f"  could not list the attachments of SAP invoice {invoice.doc_num}: {exc}")
                    continue
                lines = (listing or {}).get("Attachments2_Lines") or []
                if self.dry_run:
                    for ln in lines:
                        self.out(f"  would upload {ln.get('FileName')}.{ln.get('FileExtension')} to BILL bill "
                                 f"{invoice.bill_id} (SAP invoice {invoice.doc_num})")
                    continue
                AttachmentRecord.objects.bulk_create([AttachmentRecord(
                    connection=self.connection, invoice=invoice, attachment_entry=int(entry),
                    line_num=int(ln.get("LineNum") or n), bill_id=invoice.bill_id,
                    file_name=f"{ln.get('FileName')}.{ln.get('FileExtension')}"[:260],
                ) for n, ln in enumerate(lines, start=1)], ignore_conflicts=True)
                self.summary["listed"] += len(lines)

    def pending(self, only_ids=None):
        qs = AttachmentRecord.objects.filter(connection=self.connection)
        if only_ids is not None:
            qs = qs.filter(pk__in=only_ids)
        else:
            qs = qs.filter(Q(status__in=[Status.PENDING, Status.UPLOADING])
                           | Q(status=Status.FAILED, attempts__lt=MAX_AUTO_ATTEMPTS))
        yield from chunks_by_pk(qs.select_related("invoice"), CHUNK)

    # --- upload ----------------------------------------------------------------------------------------------
    def upload(self, only_ids=None):
        if self.dry_run:
            return
        listed = {}  # bill id -> {document name: id}, read once per bill per run
        with tempfile.TemporaryFile(prefix="ml-connector-attachment-") as spool:
            for chunk in self.pending(only_ids):
                for record in chunk:
                    self._one(record, listed, spool)

    def _bill_documents(self, bill_id, listed, refresh=False):
        if refresh or bill_id not in listed:
            names, page = {}, None
            while True:
                params = {"max": 100, **({"page": page} if page else {})}
                answer = self.bill.get(f"/v3/documents/bills/{bill_id}", params=params)
                rows = answer if isinstance(answer, list) else (answer or {}).get("results") or []  # both shapes
                for row in rows:
                    names.setdefault(row.get("name"), row.get("id"))
                page = None if isinstance(answer, list) else (answer or {}).get("nextPage")
                if not rows or not page:
                    break
            listed[bill_id] = names
        return listed[bill_id]

    def _one(self, record, listed, spool):
        from connector import leases

        if record.status == Status.UPLOADING and record.claimed_by and leases.alive({record.claimed_by}) \
                and record.claimed_by != self.lease.token:
            self.summary["busy"] += 1
            return
        ext = record.file_name.rsplit(".", 1)[-1].lower() if "." in record.file_name else ""
        if ext not in SUPPORTED:
            return self._set(record, Status.REFUSED, f"{record.file_name}: BILL does not take .{ext or '(none)'} files "
                             f"as bill documents (PDF and images do): attach it in BILL by hand, or replace it in SAP "
                             "and replay the invoice")
        bill_id = record.invoice.bill_id or record.bill_id
        attempted_before = record.upload_attempted_at is not None
        grace = globals()["UPLOAD_GRACE"]
        if attempted_before and record.upload_attempted_at > timezone.now() - grace and not record.upload_id:
            # the answer to that upload was lost; BILL may still be processing it (not listed yet): look later
            self.summary["processing"] += 1
            return
        now = timezone.now()
        claimed = AttachmentRecord.objects.filter(pk=record.pk, status=record.status, claimed_by=record.claimed_by).update(
            status=Status.UPLOADING, claimed_by=self.lease.token, attempts=F("attempts") + 1, bill_id=bill_id)
        if not claimed:
            self.summary["busy"] += 1
            return
        record.status, record.claimed_by, record.bill_id = Status.UPLOADING, self.lease.token, bill_id
        record.attempts += 1
        try:
            existing = self._bill_documents(bill_id, listed, refresh=attempted_before).get(record.file_name)
        except BillNotFound:
            return self._set(record, Status.REFUSED, f"BILL bill {bill_id} no longer exists: {record.file_name} was "
                                                     "not uploaded")
        except RemoteError as exc:
            return self._set(record, Status.FAILED, f"could not list the documents of BILL bill {bill_id}: {exc}")
        if existing:
            record.document_id = existing
            self.summary["adopted"] += 1
            return self._set(record, Status.UPLOADED, "", f"{record.file_name} is already on BILL bill {bill_id}; "
                                                          "not uploaded again")
        try:
            with trail.about(record.invoice):
                size = sap_download(self.sap, f"Attachments2({record.attachment_entry})/$value",
                                    {"filename": f"'{record.file_name}'"}, spool, MAX_BYTES)
        except TooLarge as exc:
            record.size = exc.size
            return self._set(record, Status.REFUSED, f"{record.file_name} is {exc.size / 1048576:.1f} MB; BILL takes "
                             "at most 6 MB per bill document: attach a smaller copy in BILL by hand (the bill itself "
                             "is in BILL)")
        except SapError as exc:
            message = getattr(exc, "sap_message", "") or str(exc)
            if "folder is not defined" in message.lower() or "folder not defined" in message.lower():
                return self._set(record, Status.FAILED, f"{record.file_name}: SAP cannot read its attachments folder "
                                 f"(\"{message}\"): in SAP, General Settings → Path → Attachments Folder must be "
                                 "reachable by the Service Layer; retried on the next run")
            return self._set(record, Status.REFUSED, f"{record.file_name}: SAP could not give the file (\"{message}\"): "
                             "check the attachment in SAP, then replay the invoice")
        except RemoteError as exc:
            return self._set(record, Status.FAILED, f"{record.file_name}: could not download it from SAP: {exc}")
        record.size = size
        # from here BILL may get the file: a retry looks for it on the bill first (after UPLOAD_GRACE)
        record.upload_attempted_at = now
        AttachmentRecord.objects.filter(pk=record.pk).update(upload_attempted_at=now, size=size)
        try:
            with trail.about(record.invoice):
                answer = bill_upload(self.bill, f"/v3/documents/bills/{bill_id}", {"name": record.file_name}, spool,
                                     size) or {}
        except ResponseLost as exc:
            return self._set(record, Status.FAILED, f"{record.file_name}: BILL did not answer the upload ({exc}); "
                             "it is looked for on the bill before being sent again")
        except BillError as exc:
            status = Status.REFUSED if exc.permanent else Status.FAILED
            return self._set(record, status, f"{record.file_name}: BILL refused the upload: {exc}")
        except RemoteError as exc:
            return self._set(record, Status.FAILED, f"{record.file_name}: could not reach BILL: {exc}")
        ident = str(answer.get("id") or answer.get("documentId") or "")
        upload = str(answer.get("uploadId") or (ident if ident.startswith("0du") else ""))
        if ident.startswith("00h"):
            record.document_id, record.upload_id = ident, upload
            self.summary["uploaded"] += 1
            return self._set(record, Status.UPLOADED, "", f"Uploaded {record.file_name} ({size} bytes) to BILL bill "
                                                          f"{bill_id}")
        record.upload_id = upload
        self.summary["processing"] += 1
        self._set(record, Status.PROCESSING, "", f"Uploaded {record.file_name} ({size} bytes) to BILL bill {bill_id}; "
                                                 f"BILL is processing it (upload {upload})")

    # --- asynchronous uploads --------------------------------------------------------------------------------
    def poll(self):
        if self.dry_run:
            return
        waiting = list(AttachmentRecord.objects.filter(connection=self.connection, status=Status.PROCESSING)
                       .exclude(upload_id="").order_by("pk"))
        for start in range(0, len(waiting), STATUS_BATCH):
            batch = {r.upload_id: r for r in waiting[start:start + STATUS_BATCH]}
            try:
                answer = self.bill.get("/v3/documents/upload-status", params={"ids": ",".join(batch)})
            except RemoteError as exc:
                self.out(f"  could not read BILL's upload status: {exc}")
                return
            for row in answer if isinstance(answer, list) else (answer or {}).get("results") or []:
                record = batch.get(row.get("uploadId"))
                if record is None:
                    continue
                if row.get("documentId") or (row.get("status") or "").upper() == "UPLOADED":
                    record.document_id = row.get("documentId") or ""
                    self.summary["uploaded"] += 1
                    self._set(record, Status.UPLOADED, "", f"BILL finished {record.file_name}: document "
                                                           f"{record.document_id} on bill {record.bill_id}")

    def _set(self, record, status, error, outcome=None):
        before = {"status": record.status, "last_error": record.last_error}
        record.status, record.last_error = status, error
        if status in (Status.FAILED, Status.REFUSED):
            self.summary["refused" if status == Status.REFUSED else "failed"] += 1
        record.claimed_by = "" if status != Status.UPLOADING else record.claimed_by
        record.save(update_fields=["status", "last_error", "claimed_by", "size", "upload_id", "document_id",
                                   "updated_at"])
        # on the invoice's timeline, where staff look
        trail.log(record.invoice, AuditEvent.Kind.CHANGE, f"Attachment {record.file_name}: {record.get_status_display()}"
                  + (f": {error}" if error else ""), before=before, after={"status": status, "last_error": error})
        if outcome:
            trail.log(record.invoice, AuditEvent.Kind.OUTCOME, outcome)

