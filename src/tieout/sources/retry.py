"""Retry policy of connector calls: transient failures (429, 5xx, a dropped connection, a garbled
answer) are retried with exponential backoff, honouring Retry-After, then reported; terminal ones
(401/403, a bad request) stop at once. Connectors classify; this room only waits and counts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from tieout.errors import ExitCode, TieoutError
from tieout.sources.credentials import redact

log = logging.getLogger("tieout.sources")
T = TypeVar("T")


class ConnectorError(TieoutError):
    """A connector could not complete a pull; the message names the source. The cursor is kept."""

    exit_code = ExitCode.BAD_INPUT

    def __init__(self, source: str, message: str):
        super().__init__(redact(f"source '{source}': {message}"))
        self.source = source


class ConnectorAuthError(ConnectorError):
    """401/403: credentials are missing, wrong or lack a permission. Never retried."""


class TransientError(Exception):
    """Raised by a connector call that may succeed when tried again."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class AuthFailure(Exception):
    """Raised by a connector call refused for its credentials (HTTP 401/403)."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class Refused(Exception):
    """Raised by a connector call the server rejected for a reason retrying cannot fix (400, 404)."""


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds from a Retry-After header given as a number (HTTP-dates are rare for APIs: ignored)."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return max(seconds, 0.0)


@dataclass
class RetryPolicy:
    """At most `attempts` tries; waits backoff * 2**n (capped), or the server's Retry-After."""

    attempts: int = 5
    backoff_seconds: float = 1.0
    max_wait_seconds: float = 120.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    waits: list[float] = field(default_factory=list)  # every wait taken, for the pull summary

    def wait_for(self, attempt: int, retry_after: float | None) -> float:
        wait = retry_after if retry_after is not None else self.backoff_seconds * (2 ** (attempt - 1))
        return min(wait, self.max_wait_seconds)

    def call(self, source: str, what: str, fn: Callable[[], T]) -> T:
        """`fn()`, retried on TransientError; AuthFailure and exhaustion become ConnectorErrors."""
        for attempt in range(1, self.attempts + 1):
            try:
                return fn()
            except AuthFailure as exc:
                status = f"HTTP {exc.status}: " if exc.status else ""
                raise ConnectorAuthError(
                    source, f"authentication failed ({status}{exc}) while {what}; check the credentials in "
                    f"this source's options (API key, token or URL) and that they grant read access"
                ) from None
            except Refused as exc:
                raise ConnectorError(source, f"the server refused {what}: {exc}") from None
            except TransientError as exc:
                if attempt == self.attempts:
                    raise ConnectorError(source, f"{exc} while {what}; gave up after {attempt} attempts "
                                         "(the cursor was not advanced)") from None
                wait = self.wait_for(attempt, exc.retry_after)
                log.warning("%s", redact(f"source '{source}': {exc} while {what}; retry {attempt} in {wait:g}s"))
                self.waits.append(wait)
                self.sleep(wait)
        raise AssertionError("unreachable")
