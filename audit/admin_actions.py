"""The "Replay the failed step" admin action, for any admin of replayable records.

Usage: `actions = [replay_selected]` on the InvoiceRecord, PaymentRecord, VendorLink and WebhookEvent admins.
It queues one ReplayJob per connection in the selection (the work runs in the task queue) and links to it;
the job page shows the progress and, at the end, the records that still fail.
"""

from django.contrib import admin, messages
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html

from connector.tenancy import plain_error

from .replay import TYPE_WORDS, enqueue_replays


def job_link(job):
    try:
        url = reverse("admin:audit_replayjob_change", args=[job.pk])
    except NoReverseMatch:
        return format_html("replay job #{}", job.pk)
    return format_html('<a href="{}">replay job #{}</a>', url, job.pk)


@admin.action(description="Replay the failed step", permissions=["change"])
def replay_selected(modeladmin, request, queryset):
    jobs = enqueue_replays(queryset, request.user.get_username())
    if not jobs:
        modeladmin.message_user(request, "Nothing selected: nothing to replay.", messages.INFO)
        return
    for job in jobs:
        job.refresh_from_db()  # the queue may already have run it (sync mode, fast worker)
        words = TYPE_WORDS.get(job.record_type, job.record_type)
        if job.status in (job.Status.QUEUED, job.Status.RUNNING):
            text = format_html("Replay of {} {} record(s) of {} queued as {}: its page shows the progress.",
                               job.total, words, job.connection, job_link(job))
        else:
            text = format_html("{} of {} {} record(s) of {}: {}.", job_link(job), job.total, words, job.connection,
                               plain_error(job.message).splitlines()[0] if job.message else job.get_status_display())
        level = messages.WARNING if job.status == job.Status.FAILED or job.failed else messages.SUCCESS
        modeladmin.message_user(request, text, level)


class ReplayButtonMixin:
    """A "Replay the failed step" button on a record's own page (POST to <id>/replay/)."""

    change_form_template = "admin/audit/change_form_with_replay.html"

    def get_urls(self):
        from django.urls import path

        opts = self.model._meta
        return [
            path("<path:object_id>/replay/", self.admin_site.admin_view(self.replay_view),
                 name=f"{opts.app_label}_{opts.model_name}_replay"),
        ] + super().get_urls()

    def replay_view(self, request, object_id):
        from django.contrib.admin.utils import unquote
        from django.core.exceptions import PermissionDenied
        from django.http import Http404, HttpResponseNotAllowed
        from django.shortcuts import redirect

        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            raise Http404("no such record")
        if not self.has_change_permission(request, obj):
            raise PermissionDenied
        replay_selected(self, request, self.get_queryset(request).filter(pk=obj.pk))
        opts = self.model._meta
        return redirect(f"admin:{opts.app_label}_{opts.model_name}_change", obj.pk)
