"""URL routes: the admin, the BILL webhook receiver and a health check."""

from django.contrib import admin
from django.urls import path

from connector import views

admin.site.site_header = "ml-connector"
admin.site.site_title = "ml-connector"
admin.site.index_title = "SAP Business One ↔ BILL"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", views.healthz, name="healthz"),
]
