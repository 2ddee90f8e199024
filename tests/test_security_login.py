"""Issue 10: the admin login is throttled (django-axes): repeated wrong passwords lock that user name from that
address for a while, and nothing about the attempts stores the password."""

import pytest
from django.contrib.auth.models import User
from django.test import Client


@pytest.mark.django_db
def test_five_wrong_passwords_lock_the_login_then_it_unlocks_after_the_cool_off(settings):
    from axes.models import AccessAttempt

    User.objects.create_user("carol", password="the-right-password-1", is_staff=True)
    client = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        answer = client.post("/admin/login/", {"username": "carol", "password": "wrong-guess-123"})
        assert answer.status_code == 200 and "correct username and password" in answer.content.decode()
    assert client.post("/admin/login/", {"username": "carol", "password": "wrong-guess-123"}).status_code == 429
    locked = client.post("/admin/login/", {"username": "carol", "password": "the-right-password-1"})
    assert locked.status_code == 429 and "Too many failed logins" in locked.content.decode()
    assert "_auth_user_id" not in client.session
    stored = " ".join(f"{a.get_data} {a.post_data}" for a in AccessAttempt.objects.all())
    assert "wrong-guess-123" not in stored and "the-right-password-1" not in stored
    AccessAttempt.objects.update(attempt_time="2000-01-01T00:00:00Z")  # the cool-off has passed
    answer = client.post("/admin/login/", {"username": "carol", "password": "the-right-password-1"})
    assert answer.status_code == 302 and client.session.get("_auth_user_id")


@pytest.mark.django_db
def test_another_user_name_is_not_locked(settings):
    User.objects.create_user("dave", password="the-right-password-2", is_staff=True)
    client = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT + 1):
        client.post("/admin/login/", {"username": "carol", "password": "x"})
    answer = client.post("/admin/login/", {"username": "dave", "password": "the-right-password-2"})
    assert answer.status_code == 302
