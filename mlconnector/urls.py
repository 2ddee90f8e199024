"""URL routes: the admin, the BILL webhook receiver and a health check."""

from django.contrib import admin
from django.urls import path

from connector import views, webhooks

admin.site.site_header = "ml-connector"
admin.site.site_title = "ml-connector"
admin.site.index_title = "SAP Business One ↔ BILL"

urlpatterns = [
    path("admin/host/", views.host_page, name="host-page"),  # before the admin's catch-all
    path("admin/", admin.site.urls),
    path("healthz", views.healthz, name="healthz"),
    path("webhooks/bill/<str:token>/", webhooks.bill_webhook, name="bill-webhook"),
]
