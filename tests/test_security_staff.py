"""Issue 10: host operators provision tenant staff from scripts (`manage.py staff add|list|remove`)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth import authenticate as _authenticate
from django.contrib.auth.models import User
from django.test import RequestFactory

from connector.connections import apply_connection
from connector.models import Membership
from tests.conftest import connection_file
from tests.test_connections import run_cli

ROOT = Path(__file__).resolve().parents[1]


def authenticate(**credentials):
    """As the admin's login form does it (django-axes needs the request)."""
    return _authenticate(RequestFactory().post("/admin/login/"), **credentials)


@pytest.fixture
def tenants(db):
    for slug in ("acme", "globex"):
        apply_connection(connection_file("http://sap.test:50000", "http://bill.test", tenant=slug, name=f"{slug}-prod"))


def test_add_with_a_password_file_then_update_role_list_and_remove(tenants, tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("correct-horse-battery\n")
    code, out, err = run_cli("staff", "add", "carol", "--tenant", "acme", "--role", "viewer", "--email",
                             "carol@acme.example", "--password-file", str(secret))
    assert code == 0, err
    assert "created staff user carol: viewer of tenant acme" in out and "correct-horse" not in out
    user = User.objects.get(username="carol")
    assert user.is_staff and not user.is_superuser and user.email == "carol@acme.example"
    assert authenticate(username="carol", password="correct-horse-battery") == user
    assert Membership.objects.get(user=user).role == "viewer"

    code, out, _ = run_cli("staff", "add", "carol", "--tenant", "acme", "--role", "editor")
    assert code == 0 and "updated staff user carol: editor" in out
    assert Membership.objects.get(user=user).role == "editor"
    assert authenticate(username="carol", password="correct-horse-battery") is not None  # password kept

    run_cli("staff", "add", "dave", "--tenant", "globex", "--role", "viewer")
    code, out, _ = run_cli("staff", "list", "--tenant", "acme")
    assert code == 0 and "carol" in out and "dave" not in out
    code, out, _ = run_cli("staff", "list")
    assert "carol" in out and "dave" in out and "globex" in out

    code, out, _ = run_cli("staff", "remove", "carol")
    assert code == 0
    user.refresh_from_db()
    assert not user.is_active and not user.is_staff and not user.has_usable_password()
    assert not Membership.objects.filter(user=user).exists()
    assert authenticate(username="carol", password="correct-horse-battery") is None


def test_a_user_added_without_a_password_cannot_log_in_until_given_one(tenants):
    code, out, _ = run_cli("staff", "add", "erin", "--tenant", "acme", "--role", "viewer")
    assert code == 0 and "no password yet" in out
    assert not User.objects.get(username="erin").has_usable_password()


@pytest.mark.parametrize("args,words", [
    (["add", "x", "--tenant", "nope", "--role", "viewer"], "no tenant 'nope' (known: acme, globex)"),
    (["add", "x", "--tenant", "acme", "--role", "admin"], "--role must be one of viewer, editor"),
    (["add", "bad name!", "--tenant", "acme", "--role", "viewer"], "USERNAME"),
    (["add", "x", "--tenant", "acme", "--role", "viewer", "--email", "not-an-email"], "--email"),
    (["add", "x", "--tenant", "acme", "--role", "viewer", "--password-file", "/nonexistent/pw"], "cannot read"),
    (["add", "root", "--tenant", "acme", "--role", "viewer"], "host operator"),
    (["remove", "root"], "host operator"),
    (["remove", "nobody"], "no user 'nobody'"),
    (["list", "--tenant", "nope"], "no tenant 'nope'"),
])
def test_bad_input_exits_2_and_changes_nothing(tenants, args, words):
    User.objects.create_superuser("root", password="pw")
    before = sorted(User.objects.values_list("username", "is_active", "is_superuser"))
    code, _, err = run_cli("staff", *args)
    assert code == 2 and words in err, err
    assert sorted(User.objects.values_list("username", "is_active", "is_superuser")) == before
    assert User.objects.get(username="root").is_superuser and not Membership.objects.exists()


def test_a_short_password_is_refused_without_echoing_it(tenants, tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("abc")
    code, out, err = run_cli("staff", "add", "x", "--tenant", "acme", "--role", "viewer", "--password-file", str(secret))
    assert code == 2 and "password:" in err and "abc" not in err + out
    assert not User.objects.filter(username="x").exists()


def _manage(*args, stdin=""):
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "mlconnector.test_settings"}
    from django.db import connection

    env["ML_TEST_DB_NAME"] = connection.settings_dict["NAME"]
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, input=stdin, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.django_db(transaction=True)
def test_password_from_standard_input_and_never_on_the_command_line():
    apply_connection(connection_file("http://sap.test:50000", "http://bill.test", tenant="acme", name="acme-prod"))
    answer = _manage("staff", "add", "frank", "--tenant", "acme", "--role", "editor", "--password", "on-the-line")
    assert answer.returncode == 2 and "unrecognized arguments" in answer.stderr
    answer = _manage("staff", "add", "frank", "--tenant", "acme", "--role", "editor", "--password-file", "-",
                     stdin="from-standard-input\n")
    assert answer.returncode == 0, answer.stderr
    assert "from-standard-input" not in answer.stdout + answer.stderr
    assert authenticate(username="frank", password="from-standard-input") is not None
    answer = _manage("staff", "add", "frank", "--tenant", "nope", "--role", "editor")
    assert answer.returncode == 2
