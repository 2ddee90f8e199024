"""Settings for the test suite: the normal settings plus a fixed encryption key and fast password hashing."""

import os

# Fixed throwaway key: encrypted fields build their crypter at import time, so it must exist before settings load.
os.environ.setdefault("FIELD_ENCRYPTION_KEY", "Ns4Cj0bN8h6XbGkR8mB1n3Vt0c7mY2aZbq9Jp5Q3xUw=")
# The suite runs with DEBUG=0, where these are required (production refuses to start without them).
os.environ.setdefault("SECRET_KEY", "test-only-secret-key-4b7c1d9e0f2a3b5c6d8e7f9a0b1c2d3e4f5a6b7c8d9e")
os.environ.setdefault("ALLOWED_HOSTS", "127.0.0.1,localhost,testserver")
os.environ.setdefault("HTTPS", "0")  # the test client and the live server speak plain HTTP

from mlconnector.settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
Q_CLUSTER = {**Q_CLUSTER, "sync": True}  # noqa: F405
# Most tests run inside one wrapping transaction; only the limiter's own tests check the refusal.
LIMITER_REFUSE_IN_TRANSACTION = False

if DATABASES["default"]["ENGINE"].endswith("sqlite3"):  # noqa: F405
    # A file, not :memory:, so that helper processes started by a test (limiter, workers) see the same data.
    # One file per test process: concurrent runs in one checkout must not share (and corrupt) it.
    DATABASES["default"]["TEST"]["NAME"] = str(VAR_DIR / f"test-db-{os.getpid()}.sqlite3")  # noqa: F405
if os.environ.get("ML_TEST_DB_NAME"):
    # Set by tests for the helper processes they start: use the test database, not the real one.
    DATABASES["default"]["NAME"] = os.environ["ML_TEST_DB_NAME"]  # noqa: F405

# Test processes (pytest-xdist workers) share one Redis: each keeps its request slots under its own prefix.
# (Helper processes started by a test are handed the test's prefix in ML_LIMITER_PREFIX.)
LIMITER_PREFIX = os.environ.get("ML_LIMITER_PREFIX") or f"ml-connector-test-{os.getpid()}"
