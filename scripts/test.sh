#!/usr/bin/env bash
# The test command of README.md: installs tieout with its test dependencies, then runs the suite.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q -e '.[test]'
# The Spark parity tests need a JVM (PySpark 4.0: Java 17 or 21); install one only when none is on PATH.
if ! command -v java >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless >/dev/null
fi
python -m ruff check src tests
python -m mypy
python -m pytest -q
