"""Slack: a message to an incoming webhook, laid out with Block Kit (a header, one section per
finding, a context line with the dedupe keys)."""

from __future__ import annotations

import json
from typing import Any

from pydantic import Field

from tieout.notify import Message, NotifierSettings, register_notifier
from tieout.notify.http import post_json


class SlackSettings(NotifierSettings):
    webhook_url: str = Field(description="Incoming-webhook URL (https://hooks.slack.com/services/...).")
    attempts: int = Field(4, ge=1, description="Attempts before giving up on a transient failure.")
    backoff_seconds: float = Field(1.0, ge=0, description="First retry delay; doubles each attempt.")
    timeout_seconds: float = Field(10.0, gt=0, description="Per-request timeout.")


def slack_blocks(message: Message) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = [{"type": "header", "text": {"type": "plain_text", "text": message.title[:150]}}]
    for line in message.lines()[:45]:  # Slack allows 50 blocks per message
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": line[:3000]}})
    if len(message.items) > 45:
        blocks.append({"type": "section", "text": {"type": "mrkdwn",
                                                   "text": f"… and {len(message.items) - 45} more"}})
    keys = ", ".join(i.dedupe_key for i in message.items)
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"dedupe: {keys}"[:3000]}]})
    return blocks


@register_notifier("slack", SlackSettings)
def send_slack(settings: SlackSettings, message: Message) -> None:
    """Slack incoming webhook, Block Kit layout."""
    body = json.dumps({"text": message.title, "blocks": slack_blocks(message)}).encode()
    post_json(settings.webhook_url, body, {}, attempts=settings.attempts, backoff_seconds=settings.backoff_seconds,
              timeout=settings.timeout_seconds)
