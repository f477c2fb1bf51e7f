"""Reports: findings exported to CSV, JSON and XLSX for analysts and auditors."""
