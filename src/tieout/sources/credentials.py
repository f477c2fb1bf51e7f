"""Credentials of connector sources: the shared OAuth 2.0 options, kept as `SecretStr`, registered
for redaction, never shown.

A connector's options model composes the credential groups it accepts (`AccessToken`,
`ClientCredentials`, `RefreshToken`, `UsernamePassword`) and names its `grants`, the flows it can
run, in order of preference; validation refuses a config that completes none of them. Every message
a connector raises or logs passes through `redact`, and a logging filter on the `tieout` and SDK
loggers masks registered secrets, so a key can reach no log, finding or report.
"""

from __future__ import annotations

import logging
import threading
from typing import ClassVar, Self

from pydantic import BaseModel, Field, SecretStr, model_validator

# The options each OAuth 2.0 flow (or vendor login) needs, by the name connectors list in `grants`.
GRANTS: dict[str, tuple[str, ...]] = {
    "access_token": ("access_token",),
    "refresh_token": ("refresh_token", "client_id", "client_secret"),
    "client_credentials": ("client_id", "client_secret"),
    "password": ("username", "password"),
    "jwt_bearer": ("username", "client_id", "private_key"),
}


def _grant_text(grant: str) -> str:
    first, *rest = GRANTS[grant]
    return first + (f" with {', '.join(rest[:-1])}{' and ' if len(rest) > 1 else ''}{rest[-1]}" if rest else "")


def grants_text(grants: tuple[str, ...]) -> str:
    """`refresh_token with client_id and client_secret, or access_token`: what a connector accepts."""
    return ", or ".join(_grant_text(g) for g in grants)


class Credentials(BaseModel):
    """Base of the credential groups: checks that the options complete one of the connector's grants."""

    grants: ClassVar[tuple[str, ...]] = ("access_token",)

    def grant(self) -> str:
        """The first of the connector's grants whose options are all given."""
        for name in self.grants:
            if all(getattr(self, f, None) not in (None, "") for f in GRANTS[name]):
                return name
        raise ValueError("no credentials: give " + grants_text(self.grants))

    def secret(self, name: str) -> str:
        """The value of a credential option the chosen grant needs (given: validation checked it)."""
        value = getattr(self, name)
        if value is None:
            raise ValueError(f"option '{name}' is not set")
        return value.get_secret_value() if isinstance(value, SecretStr) else str(value)

    @model_validator(mode="after")
    def _one_grant_complete(self) -> Self:
        self.grant()
        return self


class AccessToken(Credentials):
    access_token: SecretStr | None = Field(None, description="OAuth 2.0 access token (or private-app token, "
                                           "session id) given as is, e.g. ${VENDOR_ACCESS_TOKEN}.")


class ClientCredentials(Credentials):
    client_id: SecretStr | None = Field(None, description="OAuth 2.0 client id of the app or API user "
                                        "(Salesforce: the connected app's consumer key), e.g. ${VENDOR_CLIENT_ID}.")
    client_secret: SecretStr | None = Field(None, description="Its client secret, e.g. ${VENDOR_CLIENT_SECRET}.")


class RefreshToken(Credentials):
    refresh_token: SecretStr | None = Field(None, description="OAuth 2.0 refresh token, exchanged (with client_id "
                                            "and client_secret) for an access token at the start of each pull. "
                                            "Vendors that rotate it (Intuit, Xero) answer a new one: tieout never "
                                            "writes secrets back, so keep the newest in your secrets store.")
    token_url: str | None = Field(None, description="OAuth 2.0 token endpoint (default: the vendor's; a proxy or "
                                  "a local test server).")


class UsernamePassword(Credentials):
    username: str | None = Field(None, description="User name to log in as.")
    password: SecretStr | None = Field(None, description="Its password, e.g. ${VENDOR_PASSWORD}.")

MASK = "[redacted]"
_MIN_SECRET = 4  # shorter values (a port, 'yes') would mask ordinary text
_lock = threading.Lock()
_secrets: set[str] = set()


def register_secret(value: SecretStr | str | None) -> None:
    """Remember a credential so `redact` masks it wherever it might appear."""
    text = value.get_secret_value() if isinstance(value, SecretStr) else value
    if text and len(text) >= _MIN_SECRET:
        with _lock:
            _secrets.add(text)


def redact(text: str) -> str:
    """`text` with every registered secret replaced by a mask (longest first)."""
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for s in secrets:
        if s in text:
            text = text.replace(s, MASK)
    return text


class RedactingFilter(logging.Filter):
    """Masks registered secrets in log records before any handler formats them."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


_FILTER = RedactingFilter()
# The loggers connectors write to, our own and the vendors' SDKs (they may log request details).
LOGGERS = ("tieout", "stripe", "chargebee", "httpx", "sqlalchemy", "urllib3", "simple_salesforce", "requests")


def install_log_redaction() -> None:
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
        for handler in logger.handlers:
            if _FILTER not in handler.filters:
                handler.addFilter(_FILTER)
    for handler in logging.getLogger().handlers:  # records propagated from child loggers skip their filters
        if _FILTER not in handler.filters:
            handler.addFilter(_FILTER)
