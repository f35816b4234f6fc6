#!/usr/bin/env bash
# Installs rktnetes and runs a first pod on the built-in busybox image (made from the host's
# busybox-static, so no network is needed).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
rkt fetch builtin:busybox
rkt image list
rkt run builtin:busybox --exec /bin/echo -- "hello from a rktnetes pod" ---
rkt list
