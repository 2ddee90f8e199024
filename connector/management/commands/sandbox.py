"""`manage.py sandbox`: run the SAP B1 and BILL simulators on loopback until interrupted (demo, manual tests)."""

import threading

from django.core.management.base import BaseCommand

from connector.sandbox.bill import BillSimulator
from connector.sandbox.sap import SapSimulator
from connector.sandbox.server import RunningServer


class Command(BaseCommand):
    help = "Serve the built-in SAP Business One and BILL simulators on 127.0.0.1."

    def add_arguments(self, parser):
        parser.add_argument("--sap-port", type=int, default=8101)
        parser.add_argument("--bill-port", type=int, default=8102)
        parser.add_argument("--seed-demo", action="store_true", help="add ~20 varied demo purchase invoices to SAP")
        parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every simulated request")

    def handle(self, *args, sap_port, bill_port, seed_demo, latency, **options):
        sap, bill = SapSimulator(), BillSimulator()
        sap.latency = bill.latency = latency
        if seed_demo:
            sap.seed_demo_invoices()
        sap_server = RunningServer(sap, port=sap_port).start()
        bill_server = RunningServer(bill, port=bill_port)
        self.stdout.write(f"SAP B1 Service Layer simulator: {sap_server.url}/b1s/v1 (company SBODEMOUS, manager/1234)")
        self.stdout.write(f"BILL v3 simulator:              {bill_server.url}/connect")
        self.stdout.write("Ctrl-C stops both.", ending="\n")
        self.stdout.flush()
        try:
            bill_server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            threading.Thread(target=sap_server.stop, daemon=True).start()
