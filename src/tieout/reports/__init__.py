"""Reports: findings exported to CSV, JSON and XLSX for analysts and auditors."""

from tieout.reports.export import COLUMNS, ExportFormat, export_findings, neutralize

__all__ = ["COLUMNS", "ExportFormat", "export_findings", "neutralize"]
