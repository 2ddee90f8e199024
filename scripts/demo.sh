#!/usr/bin/env bash
# Set up and run the product on the built-in sandbox: simulators of SAP B1 and BILL, the web app with its
# admin, the task queue, and a full sync (invoices -> bills, payments -> SAP). Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export DEBUG=1 PUBLIC_BASE_URL=${PUBLIC_BASE_URL:-http://127.0.0.1:8000}
export DATABASE_URL=${DATABASE_URL:-sqlite:///$(pwd)/var/demo.sqlite3}
PY=.venv/bin/python
if [ "${DEMO_FRESH:-1}" = "1" ] && [[ "$DATABASE_URL" == sqlite* ]]; then rm -f var/demo.sqlite3*; fi
$PY manage.py migrate --noinput -v0
$PY manage.py createcachetable

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; sleep 1; for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; }
trap cleanup EXIT INT TERM
$PY manage.py sandbox --seed-demo > var/sandbox.log 2>&1 & pids+=($!)
$PY manage.py runserver 127.0.0.1:8000 --noreload > var/web.log 2>&1 & pids+=($!)
$PY manage.py qcluster > var/qcluster.log 2>&1 & pids+=($!)
for url in http://127.0.0.1:8101/ping/ http://127.0.0.1:8000/healthz; do
  for _ in $(seq 1 60); do curl -s -o /dev/null "$url" && break; sleep 0.5; done
done
$PY manage.py demo --admin-password "${DEMO_ADMIN_PASSWORD:-}"
echo
echo "The admin stays up at http://127.0.0.1:8000/admin/ (logs in var/). Ctrl-C to stop."
[ "${DEMO_EXIT:-0}" = "1" ] && exit 0
wait "${pids[1]}"
