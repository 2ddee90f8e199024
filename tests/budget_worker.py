"""Helper process for the budget tests: BILL calls at one priority until told to stop, counting the outcomes.

Usage: python tests/budget_worker.py CONNECTION_ID PRIORITY CALLS
Prints `sent N deferred N waiting N`. (ML_TEST_DB_NAME points it at the test database.)
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mlconnector.test_settings")

import django  # noqa: E402

django.setup()

from connector import budget  # noqa: E402
from connector.clients.bill import BillClient  # noqa: E402
from connector.clients.errors import BillHourlyLimit  # noqa: E402
from connector.models import Connection  # noqa: E402


def main(conn_id, level, calls):
    client = BillClient.for_connection(Connection.objects.get(pk=conn_id))
    counts = {"sent": 0, "deferred": 0, "waiting": 0}
    with budget.priority(level):
        for _ in range(calls):
            try:
                client.get("/v3/classifications/departments", params={"max": "1"})
                counts["sent"] += 1
            except budget.BudgetDeferred:
                counts["deferred"] += 1
            except BillHourlyLimit as exc:
                if exc.code == "BDC_1144":
                    raise  # BILL itself refused: the budget failed
                counts["waiting"] += 1
    print(" ".join(f"{k} {v}" for k, v in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]), sys.argv[2], int(sys.argv[3])))
