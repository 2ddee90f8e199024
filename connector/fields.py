"""Encrypted model fields that fail loudly.

django-encrypted-model-fields returns the raw Fernet token when it cannot decrypt a value (wrong or
rotated-away key). We would then send ciphertext to SAP or BILL as a password; instead, reading such a
value raises `SecretUnreadable` naming the field, so an operator learns the key is wrong.
"""

import cryptography.fernet
from encrypted_model_fields import fields as efields


class SecretUnreadable(Exception):
    """A stored secret cannot be decrypted with the configured FIELD_ENCRYPTION_KEY."""


class _StrictMixin:
    def from_db_value(self, value, expression, connection):
        if value is None:
            return value
        try:
            return efields.CRYPTER.decrypt(value.encode("utf-8")).decode("utf-8")
        except cryptography.fernet.InvalidToken:
            model = getattr(self, "model", None)
            where = f"{model._meta.label}.{self.name}" if model else self.name
            raise SecretUnreadable(
                f"Cannot decrypt {where}: FIELD_ENCRYPTION_KEY does not match the key the value was stored with. "
                "Put the old key after the new one in FIELD_ENCRYPTION_KEY (comma-separated) to rotate."
            ) from None


class SecretCharField(_StrictMixin, efields.EncryptedCharField):
    """A short secret (password, dev key, session id), encrypted at rest."""


class SecretTextField(_StrictMixin, efields.EncryptedTextField):
    """A long secret, encrypted at rest."""
