#!/usr/bin/env bash
# The test command of README.md: installs tieout with its test dependencies, then runs the suite.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q -e '.[test]'
python -m ruff check src tests
python -m mypy
python -m pytest -q
