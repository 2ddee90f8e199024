"""Onboarding a connection on the sandbox as a person would (benchmarks and demos start from here)."""


def onboard(conn):
    """Reference data loaded, every suggested mapping confirmed, vendors aligned, and the one ambiguous supplier
    (V1003: two "Globex Services" in BILL) settled with "create a new BILL vendor"."""
    from connector.clients.bill import BillClient
    from connector.clients.sap import SapClient
    from connector.sync.vendors import VendorAligner
    from mappings.models import VendorLink
    from mappings.reference import refresh_reference
    from mappings.suggest import apply_proposals, suggest_accounts, suggest_departments

    sap, bill = SapClient.for_connection(conn), BillClient.for_connection(conn)
    refresh_reference(conn, sap, bill)
    apply_proposals([(p.sap_row, p.bill_row) for p in suggest_accounts(conn) + suggest_departments(conn)])
    VendorAligner(conn, sap, bill).run()
    VendorLink.objects.filter(connection=conn, status=VendorLink.Status.REVIEW).update(create_new=True)
    VendorAligner(conn, sap, bill).run()
    return sap, bill
