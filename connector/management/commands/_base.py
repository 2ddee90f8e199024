"""Shared behaviour of the operator CLI (CONTRACT.md): exit 0 ok, 1 work not done, 2 bad input."""

from django.core.management.base import BaseCommand, CommandError

from connector.connections import BadInput, NotFound, find_connection


class WorkFailed(CommandError):
    def __init__(self, message):
        super().__init__(message, returncode=1)


class BadInputError(CommandError):
    def __init__(self, message):
        super().__init__(message, returncode=2)


class OperatorCommand(BaseCommand):
    def execute(self, *args, **options):
        try:
            return super().execute(*args, **options)
        except (BadInput, NotFound) as exc:
            raise BadInputError(str(exc)) from None

    def get_connection(self, ref):
        try:
            return find_connection(ref)
        except NotFound as exc:
            raise BadInputError(str(exc)) from None
