"""BILL simulator: bill documents (`/v3/documents/...`, api-facts-addendum §1).

`POST /v3/documents/bills/{billId}?name=<file.ext>` takes the raw file bytes (6 MB at most; `name` required, with an
extension). The upload is asynchronous: the answer is an upload id (`0du…`, status IN_PROGRESS); `GET
/v3/documents/upload-status?ids=` (a bare array) reports IN_PROGRESS until `upload_polls` status reads later it is
UPLOADED with a `documentId` (`00h…`), and only then does the document appear in `GET /v3/documents/bills/{billId}`
(`{nextPage, prevPage, results}`; knob `documents_list_bare` answers a bare array, the other shape seen). Files
smaller than `instant_upload_bytes` complete at once (answer `id` 00h…), as BX-DOC saw. Simulator choices [U]:
supported types are pdf, png, jpg/jpeg, gif, tif/tiff, doc/docx, xls/xlsx, csv, txt; only a hash and the size of
each file are kept (benchmarks upload thousands of them).
"""

from __future__ import annotations

import hashlib

from .common import ApiError, _bad, _not_found

MAX_DOCUMENT_BYTES = 6 * 1024 * 1024
SUPPORTED = {"pdf", "png", "jpg", "jpeg", "gif", "tif", "tiff", "doc", "docx", "xls", "xlsx", "csv", "txt"}


class DocumentsMixin:
    upload_polls = 1  # status reads an upload stays IN_PROGRESS
    instant_upload_bytes = 0  # files below this size are done at once
    documents_list_bare = False
    upload_seconds = 0.0  # an upload this old is finished when the bill's documents are listed

    def _h_document_upload(self, ctx, bill_id):
        bill = ctx.org.bills.get(bill_id)
        if bill is None:
            raise _not_found("bill", bill_id)
        name = ctx.req.args.get("name", "")
        if not name:
            raise ApiError(400, "BDC_1108", "Missing parameter value for parameter: name.")
        if "." not in name.strip("."):
            raise _bad(f"Invalid parameter value for parameter,value: name, {name}. The file name needs an extension.")
        if name.rsplit(".", 1)[1].lower() not in SUPPORTED:
            raise _bad(f"Invalid parameter value for parameter,value: name, {name}. Unsupported file type.")
        length = ctx.req.content_length or 0
        if length > MAX_DOCUMENT_BYTES:
            raise _bad(f"File size {length} exceeds the maximum of {MAX_DOCUMENT_BYTES} bytes (6 MB).")
        digest, size = hashlib.sha256(), 0
        stream = ctx.req.stream
        while True:
            chunk = stream.read(65536)
            if not chunk:
                break
            size += len(chunk)
            if size > MAX_DOCUMENT_BYTES:
                raise _bad(f"File size exceeds the maximum of {MAX_DOCUMENT_BYTES} bytes (6 MB).")
            digest.update(chunk)
        if not size:
            raise _bad("Invalid request body: the file is empty.")
        upload_id = self._new_id("0du")
        doc = {"id": upload_id, "uploadId": upload_id, "documentId": None, "billId": bill_id, "name": name,
               "size": size,
               "sha256": digest.hexdigest(), "createdTime": ctx.now, "polls": self.upload_polls,
               "started": self._now_ts()}
        ctx.org.documents[upload_id] = doc
        if size < self.instant_upload_bytes:
            self._finish_upload(doc)
            return 200, self._document_view(doc)
        return 200, {"id": upload_id, "uploadId": upload_id, "name": name, "status": "IN_PROGRESS",
                     "createdTime": ctx.now}

    def _finish_upload(self, doc):
        if doc["documentId"] is None:
            doc["documentId"] = self._new_id("00h")
            doc["polls"] = 0

    def _h_document_status(self, ctx):
        ids = [i for i in (ctx.req.args.get("ids") or "").split(",") if i]
        if not ids:
            raise ApiError(400, "BDC_1108", "Missing parameter value for parameter: ids.")
        out = []
        for upload_id in ids:
            doc = ctx.org.documents.get(upload_id)
            if doc is None:
                raise _not_found("upload", upload_id)
            if doc["documentId"] is None:
                doc["polls"] -= 1
                if doc["polls"] < 0:
                    self._finish_upload(doc)
            out.append({"uploadId": upload_id, "documentId": doc["documentId"],
                        "status": "UPLOADED" if doc["documentId"] else "IN_PROGRESS"})
        return 200, out

    def _document_view(self, doc):
        return {"id": doc["documentId"], "name": doc["name"], "createdTime": doc["createdTime"],
                "downloadLink": f"https://sandbox.bill.test/documents/{doc['documentId']}"}

    def _h_document_list(self, ctx, bill_id):
        from .listing import paginate

        if bill_id not in ctx.org.bills:
            raise _not_found("bill", bill_id)
        for doc in ctx.org.documents.values():  # BILL finishes uploads "in a few minutes" whether polled or not
            if doc["billId"] == bill_id and doc["documentId"] is None and \
                    self._now_ts() - doc["started"] >= self.upload_seconds:
                self._finish_upload(doc)
        docs = [{**self._document_view(d), "id": d["documentId"]} for d in ctx.org.documents.values()
                if d["billId"] == bill_id and d["documentId"]]
        page = paginate(docs, ctx.req.args)
        return 200, page["results"] if self.documents_list_bare else page

    def _h_document_get(self, ctx, ident):
        for doc in ctx.org.documents.values():
            if ident in (doc["documentId"], doc["uploadId"]) and doc["documentId"]:
                return 200, self._document_view(doc)
        raise _not_found("document", ident)

    def bill_documents(self, bill_id, org_id=None):
        """Test helper: [{name, size, sha256, documentId}] of the finished documents of one bill."""
        with self._lock:
            org = self._org(org_id)
            return [{k: d[k] for k in ("name", "size", "sha256", "documentId")} for d in org.documents.values()
                    if d["billId"] == bill_id and d["documentId"]]
