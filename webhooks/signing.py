"""Secrets and signatures: the Standard Webhooks scheme through the official `standardwebhooks` library."""

import base64
import secrets
from datetime import datetime

from standardwebhooks import Webhook

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32  # at least 24 (contract section 8)


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def signature_header(*, secrets_in_use: list[str], message_id: str, timestamp: datetime, body: str) -> str:
    """`webhook-signature`: one `v1,<base64>` per secret in use, space-separated (two during a rotation)."""
    return " ".join(Webhook(secret).sign(msg_id=message_id, timestamp=timestamp, data=body)
                    for secret in secrets_in_use)


def signed_headers(*, secrets_in_use: list[str], message_id: str, timestamp: datetime, body: str) -> dict:
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": signature_header(secrets_in_use=secrets_in_use, message_id=message_id,
                                              timestamp=timestamp, body=body),
    }
