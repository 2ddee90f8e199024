"""SAP simulator: attachments (Attachments2, api-facts-addendum §5).

A document's `AttachmentEntry` is the key of an `Attachments2` entry, whose `Attachments2_Lines` are its files
(`FileName` without the extension, `FileExtension`). `GET Attachments2(n)` lists them; `GET Attachments2(n)/$value`
returns the first file, `…/$value?filename='<FileName>.<FileExtension>'` any other, as raw bytes (Content-Type from
the extension). Files are generated on the fly from a seed (a PDF header, then filler) and streamed, so tests and
benchmarks can serve thousands of megabyte files without holding them. Knob `attachments_folder_reachable`: False
makes every download answer 400 -5002 "The attachments folder is not defined, or it has been changed or removed."
(seen live for uploads; [U] for downloads). A file marked missing answers [U] 400 -5002 naming the file.
"""

from __future__ import annotations

import hashlib

from werkzeug.wrappers import Response

from .schema import SapError
from .values import _copy_row

FOLDER_MESSAGE = "The attachments folder is not defined, or it has been changed or removed."
TYPES = {"pdf": "application/pdf", "png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg",
         "txt": "text/plain", "doc": "application/msword", "xls": "application/vnd.ms-excel",
         "exe": "application/octet-stream"}
CHUNK = 64 * 1024


def file_bytes(seed: str, size: int):
    """The simulated content of one file, in chunks (deterministic: the same seed and size give the same bytes)."""
    head = b"%PDF-1.4\n% ml-connector sandbox attachment " + seed.encode() + b"\n"
    block = hashlib.sha256(seed.encode()).digest() * (CHUNK // 32)
    sent = 0
    first = head[:size]
    if first:
        yield first
        sent = len(first)
    while sent < size:
        part = block[:min(CHUNK, size - sent)]
        yield part
        sent += len(part)


def file_digest(seed: str, size: int) -> str:
    digest = hashlib.sha256()
    for chunk in file_bytes(seed, size):
        digest.update(chunk)
    return digest.hexdigest()


class AttachmentsMixin:
    attachments_folder_reachable = True

    def attach_files(self, doc_entry, files, *, touch=True) -> dict:
        """Give an invoice an attachment entry with these files: [{"name": "inv", "ext": "pdf", "size": 1000,
        "missing": False}]. Returns the Attachments2 entry (a copy); each line's `seed` makes its bytes."""
        with self._lock:
            invoice = self._invoice(doc_entry)
            entry = max(self._tables["Attachments2"], default=0) + 1
            lines, self._attachment_files = [], getattr(self, "_attachment_files", {})
            for i, spec in enumerate(files):
                lines.append({"AbsoluteEntry": entry, "LineNum": i + 1, "SourcePath": r"\\b1server\attachments",
                              "FileName": spec["name"], "FileExtension": spec.get("ext", "pdf"),
                              "AttachmentDate": self.now().date(), "UserID": "1", "Override": "tNO", "FreeText": None})
                self._attachment_files[(entry, f"{spec['name']}.{spec.get('ext', 'pdf')}")] = (
                    f"{self.company_db}-{entry}-{i + 1}", int(spec.get("size", 1000)), bool(spec.get("missing")))
            self._tables["Attachments2"][entry] = {"AbsoluteEntry": entry, "Attachments2_Lines": lines}
            self._changed("Attachments2")
            invoice["AttachmentEntry"] = entry
            if touch:
                self._touch(invoice)
            self._changed("PurchaseInvoices")
            return _copy_row(self._tables["Attachments2"][entry])

    def attachment_file(self, entry, file_name):
        """(seed, size, missing) of one attached file, for tests."""
        return self._attachment_files[(entry, file_name)]

    def _attachment_value(self, ctx, method, key_text):
        if method != "GET":
            raise SapError(400, -5006, "The requested action is not supported for this object.")
        try:
            entry = int(key_text)
        except ValueError:
            raise SapError(400, -1000, f"Invalid key value '{key_text}' for 'Attachments2'") from None
        row = self._tables["Attachments2"].get(entry)
        if row is None:
            raise SapError(404, -2028, "No matching records found (ODBC -2028)")
        if not self.attachments_folder_reachable:
            raise SapError(400, -5002, FOLDER_MESSAGE)
        wanted = ctx.option("filename")
        lines = row["Attachments2_Lines"]
        if wanted is None:
            line = lines[0]
        else:
            name = wanted.strip()
            if len(name) >= 2 and name[0] == name[-1] == "'":
                name = name[1:-1].replace("''", "'")
            line = next((ln for ln in lines if f"{ln['FileName']}.{ln['FileExtension']}" == name), None)
            if line is None:
                raise SapError(404, -2028, "No matching records found (ODBC -2028)")
        file_name = f"{line['FileName']}.{line['FileExtension']}"
        seed, size, missing = self._attachment_files[(entry, file_name)]
        if missing:
            raise SapError(400, -5002, f"The file '{file_name}' cannot be found in the attachments folder")
        response = Response(file_bytes(seed, size), status=200,
                            content_type=TYPES.get(line["FileExtension"].lower(), "application/octet-stream"))
        response.headers["Content-Length"] = str(size)
        return response
