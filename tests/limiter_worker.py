"""Helper process for the limiter tests: hammers BILL with several threads through the shared limiter.

Usage: python tests/limiter_worker.py CONNECTION_ID THREADS REQUESTS_PER_THREAD
(ML_TEST_DB_NAME points it at the test database.)
"""

import os
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mlconnector.test_settings")

import django  # noqa: E402

django.setup()

from django.db import connections  # noqa: E402

from connector.clients.bill import BillClient  # noqa: E402
from connector.models import Connection  # noqa: E402


def main(conn_id, threads, per_thread):
    conn = Connection.objects.get(pk=conn_id)
    failures = []

    def work():
        try:
            client = BillClient.for_connection(conn)
            for _ in range(per_thread):
                client.get("/v3/classifications/departments", params={"max": "1"})
        except Exception as exc:  # noqa: BLE001 - reported to the parent test
            failures.append(repr(exc))
        finally:
            connections.close_all()

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    if failures:
        print("\n".join(failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])))
