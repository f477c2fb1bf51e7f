"""Generic webhook: the message as JSON, signed with HMAC-SHA256 so the receiver can check it came
from tieout (`X-Tieout-Signature: sha256=<hex of HMAC(secret, body)>`), retried with backoff."""

from __future__ import annotations

import hashlib
import hmac
import json

from pydantic import Field

from tieout.notify import Message, NotifierSettings, register_notifier
from tieout.notify.http import post_json

SIGNATURE_HEADER = "X-Tieout-Signature"


class WebhookSettings(NotifierSettings):
    url: str = Field(description="Endpoint that receives the JSON POST.")
    secret: str = Field(description="Shared secret of the HMAC-SHA256 signature (use ${ENV_VAR}).")
    attempts: int = Field(4, ge=1, description="Attempts before giving up on a transient failure.")
    backoff_seconds: float = Field(1.0, ge=0, description="First retry delay; doubles each attempt.")
    timeout_seconds: float = Field(10.0, gt=0, description="Per-request timeout.")


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@register_notifier("webhook", WebhookSettings)
def send_webhook(settings: WebhookSettings, message: Message) -> None:
    """Generic webhook: JSON body, HMAC-SHA256 signature header, retries with backoff."""
    body = json.dumps(message.payload(), sort_keys=True).encode()
    headers = {SIGNATURE_HEADER: signature(settings.secret, body),
               "X-Tieout-Dedupe-Keys": ",".join(i.dedupe_key for i in message.items)[:4000]}
    post_json(settings.url, body, headers, attempts=settings.attempts, backoff_seconds=settings.backoff_seconds,
              timeout=settings.timeout_seconds)
