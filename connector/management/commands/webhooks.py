"""`manage.py webhooks register NAME [--rotate-key]` (CONTRACT.md)."""

from connector.clients.bill import BillClient
from connector.clients.errors import RemoteError
from connector.connections import webhook_url
from connector.subscriptions import register, rotate_key

from ._base import OperatorCommand, WorkFailed


class Command(OperatorCommand):
    help = "Create (or re-enable) the BILL webhook subscription of a connection and store its security key."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        reg = sub.add_parser("register", help="create or repair the subscription")
        reg.add_argument("name")
        reg.add_argument("--rotate-key", dest="rotate", action="store_true",
                         help="also get a new security key (the old one stays valid)")

    def handle(self, *args, action, name, rotate=False, **options):
        conn = self.get_connection(name)
        bill = BillClient.for_connection(conn)
        try:
            outcome, subscription = register(conn, bill)
            self.stdout.write(f"subscription {subscription.get('id')} {outcome}: BILL sends "
                              f"{', '.join(e.get('type') for e in subscription.get('events') or [])} to {webhook_url(conn)}")
            if rotate:
                rotate_key(conn, bill)
                self.stdout.write("security key rotated; the previous key is still accepted until the next rotation")
        except RemoteError as exc:
            raise WorkFailed(f"BILL refused: {exc}") from None
        self.stdout.write("security key stored (encrypted)")

