"""Typed errors map, in one place, to MCP error results a client can branch on."""

from __future__ import annotations

import logging

import mcp_types as types
import pytest
from mcp import Client
from mcp.server.mcpserver import MCPServer

from aios_shared.errors import (
    ERROR_CODES,
    AiosError,
    Conflict,
    InsufficientCredits,
    Internal,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    RateLimited,
    ResourceExhausted,
    SubsystemUnavailable,
    Timeout,
    ToolFailed,
    Unauthenticated,
    error_from_payload,
    error_result,
    mapped_tool_errors,
)
from aios_shared.runner import install_middleware, lowlevel

pytestmark = pytest.mark.anyio

KINDS: list[type[AiosError]] = [
    InvalidArgument,
    NotFound,
    Conflict,
    PermissionDenied,
    Unauthenticated,
    RateLimited,
    ResourceExhausted,
    ToolFailed,
    SubsystemUnavailable,
    InsufficientCredits,
    Timeout,
    Internal,
]


def test_every_shared_code_has_exactly_one_kind() -> None:
    assert sorted(kind.code for kind in KINDS) == sorted(ERROR_CODES)


@pytest.mark.parametrize("kind", KINDS, ids=lambda kind: kind.code)
def test_an_error_result_carries_code_message_and_details(kind: type[AiosError]) -> None:
    error = kind("Job j-1 is done.", hint="Submit a new one.", details={"reason": "job_done"})
    result = error_result(error)
    assert result.is_error
    assert result.structured_content == {
        "code": kind.code,
        "message": "Job j-1 is done. Submit a new one.",
        "details": {"reason": "job_done"},
    }
    assert isinstance(result.content[0], types.TextContent)
    assert result.content[0].text == f"{kind.code}: Job j-1 is done. Submit a new one."
    rebuilt = error_from_payload(result.structured_content)
    assert type(rebuilt) is kind


def build() -> MCPServer:
    server = MCPServer("errors")

    @server.tool()
    @mapped_tool_errors
    async def lookup(item: int) -> int:
        """Find an item."""
        if item < 0:
            raise NotFound(f"No item {item}.", hint="List the items first.")
        if item == 0:
            raise RuntimeError("database password is hunter2")
        return item

    install_middleware(lowlevel(server), None)
    return server


async def test_typed_errors_reach_the_client_structured(caplog: pytest.LogCaptureFixture) -> None:
    async with Client(build()) as client:
        missing = await client.call_tool("lookup", {"item": -1})
        with caplog.at_level(logging.ERROR):
            crashed = await client.call_tool("lookup", {"item": 0})
        invalid = await client.call_tool("lookup", {"item": "x"})
        unknown = await client.call_tool("nope", {})
        fine = await client.call_tool("lookup", {"item": 3})
    assert missing.structured_content == {
        "code": "not_found",
        "message": "No item -1. List the items first.",
        "details": {},
    }
    assert crashed.structured_content is not None
    assert crashed.structured_content["code"] == "internal"
    assert "hunter2" not in str(crashed.content)
    assert "Traceback" not in str(crashed.content)
    incident = crashed.structured_content["details"]["incident"]
    assert [getattr(record, "incident", None) for record in caplog.records] == [incident]
    assert invalid.structured_content is not None
    assert invalid.structured_content["code"] == "invalid_argument"
    assert "errors.pydantic.dev" not in invalid.structured_content["message"]
    assert unknown.structured_content is not None
    assert unknown.structured_content["code"] == "not_found"
    assert fine.structured_content == {"result": 3}
