"""The notification outbox: which channels a finding's new state is queued for (the store writes
the queue in the run's transaction, one row per dedupe key), and the dispatch that turns pending
rows into messages — one per critical finding, one digest per owner per channel, ranked by money —
sends them and marks them sent.

Delivery is at least once: a crash after sending and before marking sends again on the next
dispatch, with the same dedupe keys in the message, so a receiver can drop the repeat.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from pydantic import ValidationError

from tieout.config import Config, NotifyConfig
from tieout.errors import ConfigError
from tieout.money import format_minor, is_known_currency
from tieout.notify import NOTIFIERS, Message, NoticeItem, NotifierSettings, NotifyError
from tieout.store import FindingRow, OutboxRow, Store

# found or reopened, escalated past the SLA, and assigned to someone by a person
NOTIFIED_STATES = ("open", "escalated", "assigned")


def channel_settings(cfg: Config) -> dict[str, tuple[str, NotifierSettings]]:
    """channel name -> (notifier, validated settings); ConfigError naming the YAML line."""
    out: dict[str, tuple[str, NotifierSettings]] = {}
    for i, ch in enumerate(cfg.notify.channels):
        where = cfg.where(("notify", "channels", i))
        if ch.type not in NOTIFIERS:
            raise ConfigError(f"{cfg.where(('notify', 'channels', i, 'type'))}: notify.channels.{i}.type: unknown "
                              f"notifier '{ch.type}' (one of {', '.join(NOTIFIERS)})")
        if ch.name in out:
            raise ConfigError(f"{where}: notify.channels.{i}.name: duplicate channel name '{ch.name}'")
        try:
            settings = NOTIFIERS[ch.type].settings.model_validate(ch.settings)
        except ValidationError as exc:
            err = exc.errors()[0]
            key = ".".join(str(p) for p in err["loc"])
            loc = ("notify", "channels", i, "settings", *err["loc"])
            msg = "unknown setting" if err["type"] == "extra_forbidden" else str(err["msg"])
            raise ConfigError(f"{cfg.where(loc)}: notify.channels.{i}.settings.{key}: {msg}") from None
        out[ch.name] = (ch.type, settings)
    return out


def notice_plan(cfg: NotifyConfig) -> Callable[[FindingRow, str], list[tuple[str, str]]]:
    """The store's callback: for a finding entering `state`, the (channel, mode) pairs to queue."""

    def plan(row: FindingRow, state: str) -> list[tuple[str, str]]:
        if state not in NOTIFIED_STATES:
            return []
        out = []
        for ch in cfg.channels:
            if ch.owners is not None and row.owner not in ch.owners:
                continue
            if row.priority in ch.immediate:
                out.append((ch.name, "immediate"))
            elif ch.digest:
                out.append((ch.name, "digest"))
        return out

    return plan


@dataclass
class DispatchReport:
    messages_sent: int = 0
    notices_sent: int = 0
    notices_failed: int = 0
    errors: list[str] = field(default_factory=list)


def _item(o: OutboxRow, f: FindingRow) -> NoticeItem:
    amount = format_minor(f.amount_at_risk, f.currency) if is_known_currency(f.currency) else \
        f"{f.currency} {f.amount_at_risk}"
    return NoticeItem(f.finding_id, o.state, f.priority, f.priority_reason, f.category, f.customer_id, amount,
                      f.amount_at_risk, f.explanation, o.dedupe_key)


def messages(rows: list[OutboxRow], findings: dict[str, FindingRow]) -> list[tuple[Message, list[int]]]:
    """Pending rows as messages with the outbox ids each covers: immediate ones alone, the rest one
    digest per (channel, owner), findings ranked by money at risk."""
    out: list[tuple[Message, list[int]]] = []
    digests: dict[tuple[str, str | None], list[OutboxRow]] = defaultdict(list)
    for o in rows:
        if o.mode == "immediate":
            out.append((Message(o.channel, o.owner, "immediate", [_item(o, findings[o.finding_id])]), [o.id]))
        else:
            digests[(o.channel, o.owner)].append(o)
    for (channel, owner), group in sorted(digests.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
        group.sort(key=lambda o: (-findings[o.finding_id].amount_at_risk, o.finding_id))
        out.append((Message(channel, owner, "digest", [_item(o, findings[o.finding_id]) for o in group]),
                    [o.id for o in group]))
    return out


def dispatch(cfg: Config, store: Store) -> DispatchReport:
    """Send every pending (or earlier failed) notice; failures are recorded and reported, not raised."""
    channels = channel_settings(cfg)
    report = DispatchReport()
    pending = [o for o in store.outbox() if o.channel in channels]
    if not pending:
        return report
    findings = {f.finding_id: f for f in store.findings(ids=sorted({o.finding_id for o in pending}))}
    for message, ids in messages(pending, findings):
        kind, settings = channels[message.channel]
        try:
            NOTIFIERS[kind].send(settings, message)
            ok, error = True, None
        except NotifyError as exc:
            ok, error = False, str(exc)
            report.errors.append(f"channel {message.channel}: {exc}")
        store.record_notifications(ids, ok, error, message.channel, {"mode": message.mode, "owner": message.owner})
        report.messages_sent += ok
        report.notices_sent += len(ids) if ok else 0
        report.notices_failed += 0 if ok else len(ids)
    return report
