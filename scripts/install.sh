#!/usr/bin/env bash
# Installs what rktnetes needs on a fresh Debian 12 machine, as root: the system tools it drives
# (runc, catatonit, CNI plugins, skopeo/umoci for interop, busybox-static for the built-in image)
# and a virtual environment with the pinned Python dependencies and the `rkt` command.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  runc catatonit containernetworking-plugins iptables iproute2 util-linux
  busybox-static skopeo umoci
)
if [ "${RKTNETES_TEST_DEPS:-0}" = 1 ]; then
  # The test suite also runs a real registry and measures against podman.
  PACKAGES+=(docker-registry podman conmon openssl procps psmisc)
fi

missing=()
for p in "${PACKAGES[@]}" python3-venv; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -r requirements.txt
.venv/bin/pip install -q --disable-pip-version-check --no-deps -e . --config-settings editable_mode=compat
ln -sf "$PWD/.venv/bin/rkt" /usr/local/bin/rkt
# Compile bytecode ahead: the monitor and the CLI start on every pod, and environments that set
# PYTHONDONTWRITEBYTECODE would otherwise recompile every module at each start.
.venv/bin/python -m compileall -q rktnetes >/dev/null
