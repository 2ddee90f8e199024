"""`manage.py staff add USERNAME --tenant T --role viewer|editor [--email E] [--password-file F] | list | remove`.

A password is taken only from a file or from standard input (`--password-file -`), never from the command line.
"""

from connector.staff import ROLES, add_staff, list_staff, read_password, remove_staff

from ._base import OperatorCommand


class Command(OperatorCommand):
    help = "Add, list and remove tenant staff (admin users with a tenant and a role)."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        add = sub.add_parser("add", help="create or update a tenant staff user and their role", allow_abbrev=False)
        add.add_argument("username")
        add.add_argument("--tenant", required=True)
        add.add_argument("--role", required=True, help=" or ".join(ROLES))
        add.add_argument("--email")
        add.add_argument("--password-file", help="file whose first line is the password; '-' reads standard input")
        listing = sub.add_parser("list", help="one line per staff user")
        listing.add_argument("--tenant")
        remove = sub.add_parser("remove", help="take a staff user's access away")
        remove.add_argument("username")

    def handle(self, *args, action, **options):
        getattr(self, f"do_{action}")(**options)

    def do_add(self, username, tenant, role, email=None, password_file=None, **_):
        password = read_password(password_file, self.stdin) if password_file else None
        user, created = add_staff(username, tenant, role, email=email, password=password)
        self.stdout.write(f"{'created' if created else 'updated'} staff user {user.username}: {role} of tenant {tenant}")
        if not user.has_usable_password():
            self.stdout.write("no password yet: set one with `staff add … --password-file F` (or '-' for stdin)")

    def do_list(self, tenant=None, **_):
        rows = list_staff(tenant)
        if not rows:
            self.stdout.write("no staff users" + (f" in tenant {tenant}" if tenant else ""))
            return
        self.stdout.write(f"{'username':<24} {'tenant':<16} {'role':<8} {'active':<7} {'last login':<17} email")
        for m in rows:
            last = f"{m.user.last_login:%Y-%m-%d %H:%M}" if m.user.last_login else "never"
            self.stdout.write(f"{m.user.username:<24} {m.tenant.slug:<16} {m.role:<8} "
                              f"{'yes' if m.user.is_active else 'no':<7} {last:<17} {m.user.email}")

    def do_remove(self, username, **_):
        remove_staff(username)
        self.stdout.write(f"removed staff user {username}: membership deleted, account deactivated")

    @property
    def stdin(self):
        import sys

        return sys.stdin
