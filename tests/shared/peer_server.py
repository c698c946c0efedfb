"""A tiny peer server for the peer-pool and runner tests, served by aios_shared.runner.

python tests/shared/peer_server.py --transport http --port 0 --ready-file F   (AIOS_AUTH_TOKEN)
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import anyio
from mcp.server.mcpserver import MCPServer

from aios_shared.config import ServerSettings, load_settings
from aios_shared.errors import NotFound, mapped_tool_errors
from aios_shared.runner import serve
from aios_shared.telemetry import TRACE_META_KEY, configure_logging, current_trace_id


def build_server() -> MCPServer:
    server = MCPServer("peer")

    @server.tool()
    @mapped_tool_errors
    async def echo(text: str) -> dict[str, str]:
        """Return the text and the trace id the call carried."""
        return {"text": text, "trace_id": current_trace_id() or ""}

    @server.tool()
    @mapped_tool_errors
    async def missing(name: str) -> str:
        """Always answers not_found (a typed peer error)."""
        raise NotFound(f"No thing named {name!r}.", details={"reason": "no_such_thing"})

    @server.tool()
    @mapped_tool_errors
    async def crash() -> str:
        """Fails unexpectedly (an internal error with an incident id)."""
        raise RuntimeError("secret internal detail")

    @server.tool()
    async def pid() -> int:
        """The server's process id."""
        return os.getpid()

    @server.tool()
    async def sleep(seconds: float) -> str:
        """Sleep, for deadline tests."""
        await anyio.sleep(seconds)
        return "slept"

    return server


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--transport", default="stdio")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ready-file", type=Path)
    flags = vars(parser.parse_args())
    settings = load_settings(ServerSettings, flags=flags)
    configure_logging("peer", "info")
    assert TRACE_META_KEY
    anyio.run(serve, build_server(), settings)


if __name__ == "__main__":
    main()
