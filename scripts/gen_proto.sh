#!/bin/sh
# Regenerate the gRPC/protobuf stubs under rktnetes/proto/ (see rktnetes/proto/gen.py).
# Usage: scripts/gen_proto.sh [--check]
set -e
cd "$(dirname "$0")/.."
PY="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"
exec "$PY" -m rktnetes.proto.gen "$@"
