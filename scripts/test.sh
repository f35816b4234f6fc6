#!/usr/bin/env bash
# Installs rktnetes with its test dependencies and runs the whole test suite, as root.
# The tests start their own services (a docker-registry on 127.0.0.1, token servers).
set -euo pipefail
cd "$(dirname "$0")/.."
RKTNETES_TEST_DEPS=1 bash scripts/install.sh
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@" tests
