"""Notifiers (DESIGN §1 step 7): one module per channel type, registered here once with its name,
doc and settings model; the config validation, `tieout notify channels` and the docs read the
registry. `outbox` turns queued notices into messages and sends them; nothing here decides routing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict

from tieout.errors import ExitCode, TieoutError


class NotifyError(TieoutError):
    """A notice could not be delivered; `transient` ones (timeouts, 429, 5xx) were retried first."""

    exit_code = ExitCode.BAD_INPUT

    def __init__(self, message: str, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class NotifierSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class NoticeItem:
    finding_id: str
    state: str  # open | escalated | assigned
    priority: str
    priority_reason: str
    category: str
    customer_id: str | None
    amount: str  # formatted money at risk
    amount_minor: int
    explanation: str
    dedupe_key: str


@dataclass(frozen=True)
class Message:
    """One message to one owner on one channel: a digest of several findings, or one immediate."""

    channel: str
    owner: str | None
    mode: str  # digest | immediate
    items: list[NoticeItem] = field(default_factory=list)

    @property
    def title(self) -> str:
        who = self.owner or "unassigned"
        if self.mode == "immediate":
            i = self.items[0]
            return f"tieout: {i.priority} finding {i.finding_id} ({i.category}, {i.amount}) for {who}"
        return f"tieout: {len(self.items)} finding{'s' if len(self.items) != 1 else ''} for {who}"

    def lines(self) -> list[str]:
        return [f"[{i.priority}] {i.finding_id} {i.category} {i.amount}"
                + (f" customer {i.customer_id}" if i.customer_id else "")
                + (f" ({i.state})" if i.state != "open" else "")
                + f": {i.explanation}" for i in self.items]

    def payload(self) -> dict[str, object]:
        """The JSON body of webhook notices; `dedupe_keys` lets a receiver drop a repeat."""
        return {"channel": self.channel, "owner": self.owner, "mode": self.mode, "title": self.title,
                "dedupe_keys": [i.dedupe_key for i in self.items],
                "findings": [i.__dict__ for i in self.items]}


@dataclass(frozen=True)
class Notifier:
    name: str
    doc: str
    settings: type[NotifierSettings]
    send: Callable[[NotifierSettings, Message], None]


NOTIFIERS: dict[str, Notifier] = {}


def register_notifier(name: str, settings: type[NotifierSettings]
                      ) -> Callable[[Callable[..., None]], Callable[..., None]]:
    def deco(fn: Callable[..., None]) -> Callable[..., None]:
        NOTIFIERS[name] = Notifier(name, (fn.__doc__ or "").strip(), settings, fn)
        return fn

    return deco


def _load_builtin() -> None:
    from tieout.notify import email, slack, webhook  # noqa: F401  (each registers itself)


_load_builtin()
