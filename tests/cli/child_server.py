"""A minimal child server for the CLI tests, run by the host over stdio.

    python tests/cli/child_server.py

Tools: ``add(a, b)`` (typed arguments, so a bad one is an ``invalid_argument`` error) and
``count(steps)`` (reports progress at every step). Resource: ``cli://greeting``.
"""

from __future__ import annotations

import anyio
from mcp.server.mcpserver import Context, MCPServer

from aios_shared.config import ServerSettings
from aios_shared.runner import serve
from aios_shared.telemetry import configure_logging

GREETING = "hello from the CLI test child"


def build_server() -> MCPServer:
    server = MCPServer("cli-child", version="0.1.0")

    @server.tool()
    async def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @server.tool()
    async def count(steps: int, ctx: Context) -> int:
        """Count to ``steps``, reporting progress at every step."""
        for step in range(1, steps + 1):
            await ctx.report_progress(step, steps, f"step {step}/{steps}")
        return steps

    @server.resource("cli://greeting", mime_type="text/plain")
    def greeting() -> str:
        """A fixed greeting."""
        return GREETING

    return server


def main() -> None:
    configure_logging("cli-child", "warning")
    anyio.run(serve, build_server(), ServerSettings())


if __name__ == "__main__":
    main()
