"""The finding lifecycle (DESIGN §1 step 6): the statuses, the actions a person takes and which
status each applies to, and the resolution kinds. One registry that the store, the CLI, bulk
import and the docs read; this room does not touch the database.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from tieout.errors import ExitCode, TieoutError


class LifecycleError(TieoutError):
    """An action that the lifecycle does not allow (resolving a closed finding, waiving without a reason)."""

    exit_code = ExitCode.BAD_INPUT


STATUSES: dict[str, str] = {
    "open": "Found and not yet handled by anyone.",
    "acknowledged": "Someone has seen it and is looking.",
    "assigned": "Given to an owner to act on.",
    "resolved": "Handled; the resolution kind says how. Reopened when it is found again.",
    "waived": "Accepted as is, with a reason (and optionally until a date, after which it reopens).",
    "closed": "No longer present in the data; kept with its history. Reopened when it is found again.",
}
ACTIVE = ("open", "acknowledged", "assigned")  # still needs someone; closed as "no longer present" when gone
ENDED = ("resolved", "waived", "closed")

RESOLUTIONS: dict[str, str] = {
    "fixed_in_source": "The record was corrected in the system it came from.",
    "credit_note": "A credit note (or refund) was issued to the customer.",
    "write_off": "The amount was written off in the ledger.",
    "false_positive": "Not a discrepancy: the systems agree once explained.",
}


@dataclass(frozen=True)
class Action:
    name: str
    doc: str
    applies_to: tuple[str, ...]
    to_status: str | None  # None: the status does not change (a comment)


ACTIONS: dict[str, Action] = {a.name: a for a in (
    Action("assign", "Give the finding to an owner (and team).", ACTIVE, "assigned"),
    Action("ack", "Acknowledge: someone has seen it and is looking.", ("open", "assigned"), "acknowledged"),
    Action("resolve", "Mark handled, with a resolution kind and why.", ACTIVE, "resolved"),
    Action("waive", "Accept as is, with a reason and an optional expiry date.", ACTIVE, "waived"),
    Action("reopen", "Put an ended finding back in the queue.", ENDED, "open"),
    Action("comment", "Add a note without changing the status.", tuple(STATUSES), None),
)}


@dataclass(frozen=True)
class Change:
    """One requested action on one finding, as the CLI or a bulk import asks for it."""

    finding_id: str
    action: str
    note: str = ""
    owner: str | None = None
    team: str | None = None
    resolution: str | None = None
    until: date | None = None


@dataclass(frozen=True)
class Assessment:
    """What routing and the priority tiers say about a finding at a run (see `routing`)."""

    priority: str
    priority_reason: str
    team: str | None
    owner: str | None
    escalate_to: str | None = None  # the SLA is breached: the finding goes to this owner


def validate_change(change: Change, current_status: str) -> str:
    """The status after `change`, or LifecycleError saying why the change is not allowed."""
    action = ACTIONS.get(change.action)
    if action is None:
        raise LifecycleError(f"unknown action '{change.action}' (one of {', '.join(ACTIONS)})")
    fid = change.finding_id
    if current_status not in action.applies_to:
        raise LifecycleError(f"cannot {action.name} finding {fid}: it is {current_status} ({action.name} applies to "
                             f"{', '.join(action.applies_to)} findings)")
    if change.action == "assign" and not change.owner:
        raise LifecycleError(f"cannot assign finding {fid}: no owner given")
    if change.action == "resolve" and change.resolution not in RESOLUTIONS:
        got = f"'{change.resolution}'" if change.resolution else "none"
        raise LifecycleError(f"cannot resolve finding {fid}: resolution {got} is not one of "
                             f"{', '.join(RESOLUTIONS)}")
    if change.action in ("waive", "comment") and not change.note.strip():
        raise LifecycleError(f"cannot {change.action} finding {fid}: a reason is required (--note)")
    if change.until is not None and change.action != "waive":
        raise LifecycleError(f"cannot {change.action} finding {fid}: an expiry date applies only to waive")
    return action.to_status or current_status


# --- bulk edits: an exported spreadsheet with its status and owner columns changed ---------------

BULK_COLUMNS = ("finding_id", "status", "owner", "resolution", "note", "waived_until")  # finding_id required


@dataclass(frozen=True)
class BulkEdit:
    row: int  # spreadsheet row number (the header is row 1)
    values: dict[str, str]


def _cell(value: object) -> str:
    text = "" if value is None else str(value).strip()
    # `findings export` neutralizes formula-like text with a leading apostrophe; undo it.
    return text[1:] if text.startswith("'") and text[1:2] in ("=", "+", "-", "@") else text


def read_bulk_edits(path: Path) -> list[BulkEdit]:
    """The rows of a CSV or XLSX export (only the columns of BULK_COLUMNS are read)."""
    if not path.exists():
        raise LifecycleError(f"{path}: file not found")
    if path.suffix.lower() == ".xlsx":
        from openpyxl import load_workbook

        wb = load_workbook(path, read_only=True, data_only=True)
        raw = [[_cell(c) for c in r] for r in wb.active.iter_rows(values_only=True)] if wb.active else []
        wb.close()
    elif path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8-sig") as fh:
            raw = [[_cell(c) for c in r] for r in csv.reader(fh)]
    else:
        raise LifecycleError(f"{path}: not a .csv or .xlsx file")
    if not raw or "finding_id" not in raw[0]:
        raise LifecycleError(f"{path}:1: no 'finding_id' column (export with `tieout findings export`)")
    header = raw[0]
    wanted = {name: header.index(name) for name in BULK_COLUMNS if name in header}
    return [BulkEdit(n, {k: (r[i] if i < len(r) else "") for k, i in wanted.items()})
            for n, r in enumerate(raw[1:], start=2) if any(r)]


_STATUS_ACTION = {"acknowledged": "ack", "assigned": "assign", "resolved": "resolve", "waived": "waive",
                  "open": "reopen"}


def bulk_changes(path: Path, edits: Sequence[BulkEdit], current: Mapping[str, tuple[str, str | None]]
                 ) -> list[Change]:
    """The changes the edited rows ask for, validated against the findings' current status and
    owner; LifecycleError naming every bad row (unknown id, illegal transition), so nothing is applied."""
    changes: list[Change] = []
    problems: list[str] = []
    for e in edits:
        where = f"{path.name}:{e.row}"
        fid = e.values.get("finding_id", "")
        if fid not in current:
            problems.append(f"{where}: no finding with id '{fid}'")
            continue
        status, owner = current[fid]
        new_status = e.values.get("status") or status
        new_owner = e.values.get("owner") or owner
        note = e.values.get("note", "")
        row: list[Change] = []
        if new_status == status:
            if new_owner != owner:
                row.append(Change(fid, "assign", note, owner=new_owner))
        elif new_status not in _STATUS_ACTION:
            problems.append(f"{where}: status '{new_status}' cannot be set by hand (one of "
                            f"{', '.join(_STATUS_ACTION)}; 'closed' is set by tieout)")
            continue
        else:
            action = _STATUS_ACTION[new_status]
            reassign = [Change(fid, "assign", note, owner=new_owner)] if new_owner != owner and action != "assign" \
                else []
            until = None
            if e.values.get("waived_until"):
                try:
                    until = date.fromisoformat(e.values["waived_until"][:10])
                except ValueError:
                    problems.append(f"{where}: waived_until '{e.values['waived_until']}' is not a date (YYYY-MM-DD)")
                    continue
            main = Change(fid, action, note, owner=new_owner if action == "assign" else None,
                          resolution=(e.values.get("resolution") or None) if action == "resolve" else None,
                          until=until if action == "waive" else None)
            # a reopened finding can then be assigned; an active one is assigned before it is ended
            row = [main, *reassign] if action == "reopen" else [*reassign, main]
        st = status
        try:
            for c in row:
                st = validate_change(c, st)
        except LifecycleError as exc:
            problems.append(f"{where}: {exc}")
            continue
        changes.extend(row)
    if problems:
        more = f" ({len(problems) - 1} more below)" if len(problems) > 1 else ""
        raise LifecycleError(f"{problems[0]}{more}; nothing was changed" + "".join(f"\n{p}" for p in problems[1:]))
    return changes
