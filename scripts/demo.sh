#!/usr/bin/env bash
# Set up (a local .venv) and run the main job: `medstream demo` on built-in data, no network needed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e .
exec .venv/bin/medstream demo "$@"
