#!/usr/bin/env bash
# Set up and run the checks: ruff, then the test suite (pytest, 2 workers).
# Uses SQLite by default; set DATABASE_URL / REDIS_URL to run against PostgreSQL / Redis.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
bash scripts/install-chromium.sh
.venv/bin/ruff check .
DEBUG=0 .venv/bin/python -m pytest -n 2 -q "$@"
