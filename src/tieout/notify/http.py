"""POST a JSON body over HTTP with retries and exponential backoff on transient failures
(connection errors, timeouts, 429 and 5xx); a 4xx is terminal. Used by the Slack and webhook notifiers.
"""

from __future__ import annotations

import logging
import time
import urllib.error
import urllib.request

from tieout.notify import NotifyError

log = logging.getLogger(__name__)


def post_json(url: str, body: bytes, headers: dict[str, str], *, attempts: int, backoff_seconds: float,
              timeout: float) -> int:
    """Status code of the first successful POST; NotifyError after the last failed attempt."""
    problem = ""
    for attempt in range(1, attempts + 1):
        req = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json", **headers})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            problem = f"HTTP {exc.code} {exc.reason}"
            if exc.code != 429 and exc.code < 500:
                raise NotifyError(f"{url}: {problem} (not retried)") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            reason = getattr(exc, "reason", exc)
            problem = f"cannot connect: {reason}"
        log.info("POST %s failed (attempt %d/%d): %s", url, attempt, attempts, problem)
        if attempt < attempts:
            time.sleep(backoff_seconds * 2 ** (attempt - 1))
    raise NotifyError(f"{url}: {problem} (after {attempts} attempts)", transient=True)
