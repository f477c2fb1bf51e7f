"""Sources: one module per system or file layout, all registered in `FORMATS`.

`read_source` turns one configured source (a file or a glob) into raw text frames; normalization
and the quality gate happen later, on the engine.
"""

from __future__ import annotations

import glob
import hashlib
from dataclasses import dataclass
from pathlib import Path

from tieout.config import Config, SourceConfig
from tieout.engines.base import Engine
from tieout.errors import ConfigError, InputError
from tieout.sources import adyen as _adyen  # noqa: F401  (registers formats)
from tieout.sources import chargebee as _chargebee  # noqa: F401  (registers the Chargebee connector)
from tieout.sources import hubspot as _hubspot  # noqa: F401  (registers the HubSpot connector)
from tieout.sources import quickbooks as _quickbooks  # noqa: F401  (registers formats)
from tieout.sources import quickbooks_api as _quickbooks_api  # noqa: F401  (registers the QuickBooks connector)
from tieout.sources import salesforce as _salesforce  # noqa: F401  (registers the Salesforce connector)
from tieout.sources import sql as _sql  # noqa: F401  (registers the SQL connector)
from tieout.sources import stripe as _stripe  # noqa: F401
from tieout.sources import stripe_api as _stripe_api  # noqa: F401  (registers the Stripe connector)
from tieout.sources import tabular as _tabular  # noqa: F401
from tieout.sources import xero as _xero  # noqa: F401  (registers the Xero connector)
from tieout.sources import xero_export as _xero_export  # noqa: F401  (registers xero_account_transactions)
from tieout.sources import zuora as _zuora  # noqa: F401  (registers the Zuora connector and export formats)
from tieout.sources.base import FORMATS, RawFrame, SourceFormat, register_format


@dataclass(frozen=True)
class InputFile:
    source: str
    path: Path
    shown: str
    sha256: str
    size: int


def source_format(cfg: Config, index: int) -> SourceFormat:
    src = cfg.sources[index]
    try:
        return FORMATS[src.format]
    except KeyError:
        raise ConfigError(
            f"{cfg.where(('sources', index, 'format'))}: sources.{index}.format: unknown format "
            f"'{src.format}' (known: {', '.join(sorted(FORMATS))})"
        ) from None


def source_files(cfg: Config, src: SourceConfig) -> list[InputFile]:
    """The files a source names (a glob may name several), with checksums for the audit trail."""
    pattern = str(cfg.resolve(src.path))
    paths = sorted(Path(p) for p in glob.glob(pattern)) if any(c in src.path for c in "*?[") else [Path(pattern)]
    if not paths:
        raise InputError(src.path, f"no file matches the path of source '{src.name}'")
    out = []
    for p in paths:
        if not p.exists():
            raise InputError(src.path, f"file not found (source '{src.name}')")
        try:
            shown = str(p.relative_to(cfg.root))
        except ValueError:
            shown = str(p)
        digest = hashlib.sha256()
        with p.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        out.append(InputFile(src.name, p, shown, digest.hexdigest(), p.stat().st_size))
    return out


def read_file(engine: Engine, fmt: SourceFormat, src: SourceConfig, file: InputFile) -> RawFrame:
    return fmt.reader(engine, file.path, src, file.shown)


__all__ = ["FORMATS", "InputFile", "RawFrame", "SourceFormat", "read_file", "register_format", "source_files"]
