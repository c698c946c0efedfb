"""An MCP client transport over the pipes of a process the host already owns.

The SDK's ``stdio_client`` spawns and reaps the process itself and hides it; the host must own
its children (pid, exit code, stderr, kill on shutdown) to supervise them, so it spawns the
process and hands its pipes to this transport.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import mcp_types as types
from anyio.abc import Process
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from anyio.streams.text import TextReceiveStream
from mcp.shared.message import SessionMessage

__all__ = ["process_transport"]

logger = logging.getLogger(__name__)

_LINE_BYTES_MAX = 64 * 1024 * 1024


@asynccontextmanager
async def process_transport(
    process: Process, child: str
) -> AsyncIterator[
    tuple[
        MemoryObjectReceiveStream[SessionMessage | Exception],
        MemoryObjectSendStream[SessionMessage],
    ]
]:
    """Newline-delimited JSON-RPC over ``process.stdout`` / ``process.stdin``. The read side
    closes when the process's stdout ends, so pending requests fail at once with "Connection
    closed" instead of hanging."""
    assert process.stdin is not None, child
    assert process.stdout is not None, child
    stdin = process.stdin
    stdout = process.stdout
    read_writer, read_stream = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    write_stream, write_reader = anyio.create_memory_object_stream[SessionMessage](0)

    async def read_lines() -> None:
        async with read_writer:
            buffer = ""
            try:
                async for chunk in TextReceiveStream(stdout, encoding="utf-8", errors="replace"):
                    lines = (buffer + chunk).split("\n")
                    buffer = lines.pop()
                    if len(buffer) > _LINE_BYTES_MAX:
                        logger.error("child.stdout_line_too_long", extra={"child": child})
                        return
                    for line in lines:
                        if line.strip():
                            await read_writer.send(_parse(line, child))
            except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
                return

    async def write_lines() -> None:
        async with write_reader:
            try:
                async for message in write_reader:
                    data = message.message.model_dump_json(by_alias=True, exclude_unset=True)
                    await stdin.send((data + "\n").encode())
            except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
                await read_writer.aclose()

    async with anyio.create_task_group() as group:
        group.start_soon(read_lines)
        group.start_soon(write_lines)
        try:
            yield read_stream, write_stream
        finally:
            group.cancel_scope.cancel()
            await write_stream.aclose()
            await read_stream.aclose()


def _parse(line: str, child: str) -> SessionMessage | Exception:
    try:
        return SessionMessage(types.jsonrpc_message_adapter.validate_json(line, by_name=False))
    except ValueError as error:
        logger.warning("child.bad_stdout_line", extra={"child": child, "line": line[:200]})
        return error
