"""Credentials of connector sources: kept as `SecretStr`, registered for redaction, never shown.

Every message a connector raises or logs passes through `redact`, and a logging filter on the
`tieout` and SDK loggers masks registered secrets, so a key can reach no log, finding or report.
"""

from __future__ import annotations

import logging
import threading

from pydantic import SecretStr

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
LOGGERS = ("tieout", "stripe", "chargebee", "httpx", "sqlalchemy", "urllib3")


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
