#!/usr/bin/env bash
# The DICOM checkers the SEG compatibility tests run (tests/dicom):
#   - dciodvfy, from Debian's dicom3tools (apt-get, once);
#   - dcmjs, the npm library OHIF loads SEG with, into .dcmjs/ (git-ignored; never committed).
# Prints `export DCMJS_NODE_PATH=...` for scripts/test.sh to eval.
set -euo pipefail
cd "$(dirname "$0")/.."
DCMJS_VERSION="${DCMJS_VERSION:-0.52.0}"

if ! command -v dciodvfy >/dev/null; then
    echo "[dicom-tools.sh] installing Debian's dicom3tools" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends dicom3tools >&2 \
        || { apt-get update -qq >&2 && apt-get install -y -qq --no-install-recommends dicom3tools >&2; }
fi
command -v node >/dev/null || { echo "[dicom-tools.sh] node is missing (apt-get install nodejs npm)" >&2; exit 1; }
if [[ ! -f .dcmjs/node_modules/dcmjs/package.json ]] \
    || ! grep -q "\"version\": \"$DCMJS_VERSION\"" .dcmjs/node_modules/dcmjs/package.json; then
    echo "[dicom-tools.sh] installing dcmjs@$DCMJS_VERSION into .dcmjs/" >&2
    mkdir -p .dcmjs
    npm install --prefix .dcmjs --no-audit --no-fund --no-save --loglevel=error \
        "dcmjs@$DCMJS_VERSION" >&2
fi
echo "export DCMJS_NODE_PATH=$PWD/.dcmjs/node_modules"
