"""A Service Layer client nobody here wrote keeps the SAP simulator honest (issue 11, point 7).

`b1sl-python` (PyPI, MIT, github.com/operator-ita/b1sl-python) is a real SAP B1 Service Layer SDK (httpx +
pydantic models generated from SL 1.27 metadata). It is driven unmodified against our simulator on /b1s/v1 and
/b1s/v2: login, paging to the end with relative and absolute nextLinks, filters, re-login after an expired
session (HTTP 401 / 301), posting a vendor payment and cancelling it, and on a branch company a payment with BPLID.
"""

from decimal import Decimal

import pytest

b1sl = pytest.importorskip("b1sl")

from b1sl import B1Client, B1Config, entities  # noqa: E402

from connector.sandbox import catalog  # noqa: E402
from connector.sandbox.sap import SapSimulator  # noqa: E402
from connector.sandbox.server import serve  # noqa: E402


@pytest.fixture
def sim():
    s = SapSimulator()
    server = serve(s)
    s.url = server.url
    yield s
    server.stop()


def client(sim, version):
    config = B1Config(base_url=f"{sim.url}/b1s/{version}", username=catalog.SAP_USER, password=catalog.SAP_PASSWORD,
                      company_db=catalog.SAP_COMPANY_DB, ssl_verify=False)
    return B1Client(config, version=version)


VERSIONS = ["v1", "v2"]


@pytest.mark.parametrize("style", ["relative", "absolute"])
@pytest.mark.parametrize("version", VERSIONS)
def test_login_and_paging_to_the_end_with_both_nextlink_styles(sim, version, style):
    sim.next_link_style = style
    sim.default_page_size = 4
    entries = sim.seed_invoices(11, seed=7)
    with client(sim, version) as b1:
        docs = list(b1.purchase_invoices.select("DocEntry", "CardCode", "DocTotal").orderby("DocEntry").stream())
    assert [d.doc_entry for d in docs] == entries
    assert sim.login_count == 1
    assert sim.stats()["requests_by_path"]["GET PurchaseInvoices"] == 3  # 4 + 4 + 3 rows


@pytest.mark.parametrize("version", VERSIONS)
def test_filters_and_single_entities(sim, version):
    sim.add_invoice("V1000", [{"AccountCode": "6100", "LineTotal": "10.00"}], num_at_card="F-1")
    sim.add_invoice("V1002", [{"AccountCode": "6100", "LineTotal": "20.00"}], num_at_card="F-2")
    with client(sim, version) as b1:
        mine = list(b1.purchase_invoices.filter("CardCode eq 'V1002' and DocTotal gt 5").stream())
        assert [d.num_at_card for d in mine] == ["F-2"]
        suppliers = list(b1.business_partners.filter("CardType eq 'cSupplier'").select("CardCode").stream())
        assert {bp.card_code for bp in suppliers} >= {"V1000", "V1002"}
        assert b1.business_partners.get("V1000").card_name


@pytest.mark.parametrize("expiry", ["standard", "strings"])
@pytest.mark.parametrize("version", VERSIONS)
def test_relogin_after_expiry(sim, version, expiry):
    sim.expiry_response = expiry
    with client(sim, version) as b1:
        assert b1.business_partners.get("V1000").card_code == "V1000"
        sim.expire_all_sessions()
        assert b1.business_partners.get("V1000").card_code == "V1000"
    assert sim.login_count == 2


def payment(invoice, amount, **extra):
    return entities.Payment(
        card_code=invoice["CardCode"], transfer_account=catalog.SAP_PAYMENT_ACCOUNT, transfer_sum=float(amount),
        transfer_reference="BILL-PAY-1", payment_invoices=[entities.PaymentInvoice(
            doc_entry=invoice["DocEntry"], sum_applied=float(amount), invoice_type="it_PurchaseInvoice")],
        **extra,
    )


@pytest.mark.parametrize("version", VERSIONS)
def test_post_and_cancel_a_vendor_payment(sim, version):
    invoice = sim.add_invoice("V1000", [{"AccountCode": "6100", "LineTotal": "75.00"}])
    with client(sim, version) as b1:
        payments = b1.get_resource(entities.Payment, "VendorPayments")
        posted = payments.create(payment(invoice, "75.00"))
        assert posted.doc_entry and Decimal(str(posted.transfer_sum)) == Decimal("75.00")
        found = list(payments.filter("TransferReference eq 'BILL-PAY-1'").stream())
        assert [p.doc_entry for p in found] == [posted.doc_entry]
        payments.action(posted.doc_entry, "Cancel")
    paid = next(i for i in sim.entities("PurchaseInvoices") if i["DocEntry"] == invoice["DocEntry"])
    assert Decimal(str(paid["PaidToDate"])) == 0
    assert next(p for p in sim.entities("VendorPayments") if p["DocEntry"] == posted.doc_entry)["Cancelled"] == "tYES"


@pytest.mark.parametrize("version", VERSIONS)
def test_branch_company_payment_needs_bplid(sim, version):
    sim.configure_company(branches=[(1, "Main"), (2, "East")])
    invoice = sim.add_invoice("V1000", [{"AccountCode": "6100", "LineTotal": "30.00"}], branch=2)
    with client(sim, version) as b1:
        payments = b1.get_resource(entities.Payment, "VendorPayments")
        with pytest.raises(Exception, match="Specify an active branch"):
            payments.create(payment(invoice, "30.00"))
        posted = payments.create(payment(invoice, "30.00", bplid=2))
        assert posted.bplid == 2
