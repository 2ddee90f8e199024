"""`manage.py sandbox`: run the SAP B1 and BILL simulators on loopback until interrupted (demo, manual tests)."""

import threading

from django.core.management.base import BaseCommand

from connector.sandbox import catalog
from connector.sandbox.bill import BillSimulator
from connector.sandbox.sap import SapSimulator
from connector.sandbox.server import RunningServer


class Command(BaseCommand):
    help = "Serve the built-in SAP Business One and BILL simulators on 127.0.0.1."

    def add_arguments(self, parser):
        parser.add_argument("--sap-port", type=int, default=8101)
        parser.add_argument("--bill-port", type=int, default=8102)
        parser.add_argument("--branch-sap-port", type=int, default=8103,
                            help="a second SAP company with branches and local currency '$' (0: not started)")
        parser.add_argument("--seed-demo", action="store_true", help="add ~20 varied demo purchase invoices to SAP")
        parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every simulated request")

    def handle(self, *args, sap_port, bill_port, branch_sap_port, seed_demo, latency, **options):
        sap, bill = SapSimulator(), BillSimulator()
        branch_sap = SapSimulator(company_db=catalog.SAP_BRANCH_COMPANY_DB) if branch_sap_port else None
        sap.latency = bill.latency = latency
        if branch_sap is not None:
            branch_sap.configure_company(local_currency="$", branches=catalog.SAP_BRANCHES)
            branch_sap.latency = latency
        if seed_demo:
            sap.seed_demo_invoices()
            sap.seed_demo_extras()
            if branch_sap is not None:
                branch_sap.seed_branch_demo()
        sap_server = RunningServer(sap, port=sap_port).start()
        branch_server = RunningServer(branch_sap, port=branch_sap_port).start() if branch_sap is not None else None
        if branch_sap is not None:
            bill.add_org(catalog.BILL_BRANCH_ORG_ID, catalog.BILL_USER, catalog.BILL_PASSWORD, catalog.BILL_DEV_KEY,
                         seed=True)
        bill_server = RunningServer(bill, port=bill_port)
        self.stdout.write(f"SAP B1 Service Layer simulator: {sap_server.url}/b1s/v1 (company SBODEMOUS, manager/1234)")
        if branch_server is not None:
            self.stdout.write(f"SAP company with branches:      {branch_server.url}/b1s/v1 (company "
                              f"{catalog.SAP_BRANCH_COMPANY_DB}, local currency $, manager/1234)")
        self.stdout.write(f"BILL v3 simulator:              {bill_server.url}/connect")
        self.stdout.write("Ctrl-C stops both.", ending="\n")
        self.stdout.flush()
        try:
            bill_server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            threading.Thread(target=sap_server.stop, daemon=True).start()
            if branch_server is not None:
                threading.Thread(target=branch_server.stop, daemon=True).start()
