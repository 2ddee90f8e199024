"""Tenant staff accounts (the logic behind `manage.py staff add|list|remove`, CONTRACT.md).

A staff user belongs to one tenant with one role (viewer or editor) and logs in to the admin. Host operators
(superusers) are not tenant staff and are never changed here. A password is only ever read from a file or
standard input, validated with Django's password validators, and never printed.
"""

from django.contrib.auth import get_user_model, password_validation
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction

from .connections import BadInput
from .models import Membership, Tenant

ROLES = [choice for choice, _ in Membership.Role.choices]


def _tenant(slug):
    tenant = Tenant.objects.filter(slug=slug).first()
    if tenant is None:
        known = ", ".join(Tenant.objects.order_by("slug").values_list("slug", flat=True)[:20]) or "none yet"
        raise BadInput(f"--tenant: no tenant {slug!r} (known: {known}); tenants are created by `connection apply`")
    return tenant


def read_password(source, stdin):
    """The password in a file (first line), or on standard input when the file is '-'."""
    if source == "-":
        text = stdin.readline()
    else:
        try:
            with open(source, encoding="utf-8") as fh:
                text = fh.readline()
        except OSError as exc:
            raise BadInput(f"--password-file: cannot read {source}: {exc.strerror}") from None
    password = text.rstrip("\r\n")
    if not password:
        raise BadInput("--password-file: the password is empty")
    return password


@transaction.atomic
def add_staff(username, tenant_slug, role, email=None, password=None):
    """Create or update a tenant staff user and their membership. Returns (user, created)."""
    User = get_user_model()
    try:
        UnicodeUsernameValidator()(username)
    except ValidationError:
        raise BadInput(f"USERNAME {username!r}: letters, digits and @/./+/-/_ only") from None
    if role not in ROLES:
        raise BadInput(f"--role must be one of {', '.join(ROLES)}")
    if email:
        try:
            validate_email(email)
        except ValidationError:
            raise BadInput(f"--email {email!r} is not an e-mail address") from None
    tenant = _tenant(tenant_slug)
    user = User.objects.filter(username=username).first()
    if user is not None and user.is_superuser:
        raise BadInput(f"{username} is a host operator (superuser): tenant staff are separate accounts")
    created = user is None
    if created:
        user = User(username=username)
    if password is not None:
        try:
            password_validation.validate_password(password, user)
        except ValidationError as exc:
            raise BadInput("password: " + " ".join(exc.messages)) from None
        user.set_password(password)
    elif created:
        user.set_unusable_password()
    if email is not None:
        user.email = email
    user.is_staff, user.is_active, user.is_superuser = True, True, False
    user.save()
    Membership.objects.update_or_create(user=user, defaults={"tenant": tenant, "role": role})
    return user, created


def list_staff(tenant_slug=None):
    qs = Membership.objects.select_related("user", "tenant").order_by("tenant__slug", "user__username")
    if tenant_slug:
        qs = qs.filter(tenant=_tenant(tenant_slug))
    return list(qs)


@transaction.atomic
def remove_staff(username):
    """Take a staff user's access away: membership deleted, account deactivated (its name stays in the audit
    trail and admin history), password made unusable, which also ends their sessions."""
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise BadInput(f"no user {username!r}")
    if user.is_superuser:
        raise BadInput(f"{username} is a host operator (superuser), not tenant staff: not changed")
    Membership.objects.filter(user=user).delete()
    user.is_active = user.is_staff = False
    user.set_unusable_password()
    user.save()
    return user
