"""Issue 10: CSV exports escape formula-like cells (CSV injection), in the admin and the CLI; uploads are capped."""

import csv
import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from mappings import csvio
from mappings.models import BillAccount, SapAccount
from mappings.suggest import apply_proposals
from tests.test_connections import run_cli
from tests.test_mappings_admin import BILL_6100, refresh

EVIL = ["=HYPERLINK(\"http://evil.example\",\"x\")", "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A2)", "\tTabbed",
        "\rCarriage"]


@pytest.fixture
def evil(conn):
    refresh(conn)
    apply_proposals([(SapAccount.objects.get(connection=conn, code="6100"),
                      BillAccount.objects.get(connection=conn, bill_id=BILL_6100))])
    SapAccount.objects.filter(connection=conn, code="6100").update(name=EVIL[0])
    BillAccount.objects.filter(connection=conn, bill_id=BILL_6100).update(name=EVIL[1])
    return conn


def test_cells_that_start_a_formula_are_escaped_and_imports_take_the_escape_off():
    for value in EVIL:
        assert csvio.escape_cell(value) == "'" + value
        assert csvio.unescape_cell(csvio.escape_cell(value)) == value
    for value in ("6100", "Office supplies", "a=b", "'quoted", "", None):
        assert csvio.escape_cell(value) == ("" if value is None else value)
    assert csvio.unescape_cell("'quoted") == "'quoted"


def _cells(text):
    return [cell for row in csv.reader(io.StringIO(text)) for cell in row]


@pytest.mark.django_db
def test_cli_export_escapes_and_round_trips(evil, tmp_path):
    out = tmp_path / "m.csv"
    code, _, err = run_cli("mappings", "export", "demo-sandbox", "--output", str(out))
    assert code == 0, err
    cells = _cells(out.read_text())
    assert "'" + EVIL[0] in cells and "'" + EVIL[1] in cells
    assert not any(cell.startswith(csvio.FORMULA_START) for cell in cells)
    code, out_text, err = run_cli("mappings", "import", "demo-sandbox", str(out))
    assert code == 0, err


@pytest.mark.django_db
def test_admin_export_escapes(admin_client, evil):
    url = reverse("admin:mappings_sapaccount_export") + f"?connection__id__exact={evil.pk}"
    response = admin_client.post(url, {"format": "0", "resource": "0"})
    assert response.status_code == 200
    cells = _cells(response.content.decode())
    assert "'" + EVIL[0] in cells and "'" + EVIL[1] in cells
    assert not any(cell.startswith(csvio.FORMULA_START) for cell in cells)


@pytest.mark.django_db
def test_uploads_over_the_cap_are_refused(admin_client, evil, settings, tmp_path):
    settings.MAX_UPLOAD_BYTES = 1000
    text = "kind,sap_code,bill_id\n" + f"account,6100,{BILL_6100}\n" * 100
    answer = admin_client.post(reverse("admin:mappings_sapaccount_import"), {
        "connection": evil.pk, "resource": "0", "format": "0",
        "import_file": SimpleUploadedFile("m.csv", text.encode(), content_type="text/csv")})
    assert "mapping files are limited to" in answer.content.decode()
    big = tmp_path / "big.csv"
    big.write_text(text)
    code, _, err = run_cli("mappings", "import", "demo-sandbox", str(big))
    assert code == 2 and "limited to" in err


def test_requests_over_the_body_cap_get_413(client, settings):
    settings.MAX_REQUEST_BYTES = 1000
    answer = client.post("/admin/login/", data="x" * 2000, content_type="text/plain")
    assert answer.status_code == 413
