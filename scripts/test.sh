#!/usr/bin/env bash
# One command that installs what the tests need and runs them all (unit, integration and browser tests).
# Slow cases (minutes each) are opt-in: scripts/test.sh -m slow
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
bash scripts/setup.sh requirements-test.txt
if [ ! -x /usr/bin/chromium ]; then   # Debian's Chromium drives the browser tests (never `playwright install`)
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null
  else sudo apt-get update -qq && sudo apt-get install -y -qq chromium >/dev/null; fi
fi
set +e
.venv/bin/python -m pytest -m "not slow" "$@"
rc=$?
set -e
[ "$rc" = 5 ] && { echo "pytest collected no tests"; exit 1; }   # exit 5: nothing ran, which is a failure here
exit "$rc"
