#!/usr/bin/env bash
# The test command of README.md: installs what the tests need (tieout with its test dependencies;
# the real servers the end-to-end tests start, from Debian's packages when missing), then runs the suite.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_install() {
  if [ "$(id -u)" != 0 ]; then
    echo "scripts/test.sh: need root to apt-get install $*" >&2
    exit 2
  fi
  if [ -z "${_apt_updated:-}" ]; then
    apt-get update -qq
    _apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# PostgreSQL server binaries (tests/postgres.py runs initdb + pg_ctl in a temp dir on 127.0.0.1).
if ! command -v pg_ctl >/dev/null && ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
  apt_install postgresql
fi

# The Spark parity tests need a JVM (PySpark 4.0: Java 17 or 21).
if ! command -v java >/dev/null 2>&1; then
  apt_install openjdk-17-jre-headless
fi

python -m pip install -q -e '.[test]'
python -m ruff check src tests
python -m mypy
# Two workers (the machine has 2 cores); a test file stays on one worker, so module fixtures
# (the Spark session, the demo workspaces) are built once per file, not per test.
python -m pytest -q -n 2 --dist loadfile
