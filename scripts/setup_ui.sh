#!/usr/bin/env bash
# Front-end pieces (idempotent, called by setup.sh): Swagger UI's assets for /docs from npm
# (api/ui/package-lock.json), and Debian's Chromium for the dashboard tests in tests/ui, which drive
# /usr/bin/chromium with Playwright (Playwright's own browser download cannot be used here).
set -euo pipefail
cd "$(dirname "$0")/.."
stamp="api/ui/node_modules/.installed-$(sha256sum api/ui/package-lock.json | cut -c1-16)"
if [ ! -f "$stamp" ]; then
    # --ignore-scripts: the only install script (swagger-ui-dist's @scarf/scarf) just reports downloads
    npm ci --prefix api/ui --ignore-scripts --no-audit --no-fund --loglevel=error
    touch "$stamp"
fi
if [ ! -x /usr/bin/chromium ]; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-liberation
    else
        echo "setup_ui.sh: /usr/bin/chromium is missing (tests/ui need it): sudo apt-get install chromium" >&2
    fi
fi
