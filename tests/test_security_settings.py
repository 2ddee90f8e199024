"""Issue 10: safe by default in production. Settings are read at process start, so each case is a new process
with DEBUG=0 and a controlled environment."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[1]
# The documented production settings (README, "Running in production").
PRODUCTION = {
    "DEBUG": "0",
    "SECRET_KEY": secrets.token_urlsafe(50),
    "ALLOWED_HOSTS": "connector.example.com",
    "FIELD_ENCRYPTION_KEY": Fernet.generate_key().decode(),
    "PUBLIC_BASE_URL": "https://connector.example.com",
    "SECURE_PROXY_SSL_HEADER": "HTTP_X_FORWARDED_PROTO",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": "1",
    "SECURE_HSTS_PRELOAD": "1",
}
OURS = {"DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "FIELD_ENCRYPTION_KEY", "PUBLIC_BASE_URL", "HTTPS", "SECURE_COOKIES",
        "SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS", "SECURE_PROXY_SSL_HEADER", "SECURE_HSTS_INCLUDE_SUBDOMAINS",
        "SECURE_HSTS_PRELOAD", "CSRF_TRUSTED_ORIGINS", "DJANGO_SETTINGS_MODULE", "ML_TEST_DB_NAME",
        "DJANGO_ALLOW_ASYNC_UNSAFE"}


def manage(*args, **env):
    clean = {k: v for k, v in os.environ.items() if k not in OURS}
    clean.update({"DJANGO_SETTINGS_MODULE": "mlconnector.settings", **env})
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=clean, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("missing", ["SECRET_KEY", "ALLOWED_HOSTS", "FIELD_ENCRYPTION_KEY"])
def test_production_refuses_to_start_without_its_keys(missing):
    env = {k: v for k, v in PRODUCTION.items() if k != missing}
    answer = manage("check", **env)
    assert answer.returncode != 0
    assert f"{missing} is not set (DEBUG is off)" in answer.stderr


def test_the_encryption_key_never_comes_from_a_leftover_demo_key_file():
    key_file = ROOT / "var" / "field-encryption.key"
    created = not key_file.exists()
    if created:
        key_file.write_text(Fernet.generate_key().decode())
    try:
        env = {k: v for k, v in PRODUCTION.items() if k != "FIELD_ENCRYPTION_KEY"}
        assert "FIELD_ENCRYPTION_KEY is not set" in manage("check", **env).stderr
    finally:
        if created:
            key_file.unlink()


def test_check_deploy_is_clean_with_the_documented_production_settings():
    answer = manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)
    assert answer.returncode == 0, answer.stdout + answer.stderr
    assert "no issues" in answer.stdout


def test_production_defaults_are_the_safe_ones():
    code = ("from django.conf import settings as s; print(s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, "
            "s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS, s.SECURE_PROXY_SSL_HEADER, s.CSRF_TRUSTED_ORIGINS, "
            "s.AUTHENTICATION_BACKENDS[0], s.IMPORT_EXPORT_ESCAPE_FORMULAE_ON_EXPORT)")
    answer = manage("shell", "-c", code, **PRODUCTION)
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.strip().splitlines()[-1].split() == [
        "True", "True", "True", "31536000", "('HTTP_X_FORWARDED_PROTO',", "'https')",
        "['https://connector.example.com']", "axes.backends.AxesStandaloneBackend", "True"]


def test_debug_still_runs_without_configuration():
    answer = manage("check", DEBUG="1")
    assert answer.returncode == 0, answer.stderr
