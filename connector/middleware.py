"""A cap on request bodies (issue 10): an upload larger than MAX_REQUEST_BYTES is answered 413 before Django
reads it (streaming a multi-gigabyte "CSV" to a temp file is not something tenant staff should be able to do)."""

from django.conf import settings
from django.http import HttpResponse


class RequestSizeLimitMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            declared = 0
        if declared > getattr(settings, "MAX_REQUEST_BYTES", 10 * 1024 * 1024):
            return HttpResponse("Request body too large.", status=413, content_type="text/plain")
        return self.get_response(request)
