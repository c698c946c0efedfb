"""The commands: one MCP conversation each, on a connected client; each returns the exit code.

A request the host refuses (``is_error`` result, JSON-RPC error) is reported through
``Output.host_error`` (exit code 1); a connection lost midway is a ``CliError`` (exit code 2).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Final, TypeVar

import mcp_types as types
from mcp import Client
from mcp.shared.exceptions import MCPError
from pydantic import ValidationError

from aios_cli.errors import EXIT_OK, CliError
from aios_cli.models import HostStatusView
from aios_cli.render import Output
from aios_shared.errors import ErrorCode, ErrorPayload

__all__ = ["call_tool", "list_resources", "list_tools", "read_resource", "show_status"]

PAGES_MAX: Final = 100
HOST_STATUS_TOOL: Final = "host_status"

PageT = TypeVar("PageT")
ItemT = TypeVar("ItemT")

# JSON-RPC error codes without an AIOS payload, named in the AIOS vocabulary.
_RPC_CODES: Final[dict[int, ErrorCode]] = {
    types.INVALID_PARAMS: "invalid_argument",
    types.METHOD_NOT_FOUND: "not_found",
    types.REQUEST_TIMEOUT: "timeout",
}


async def show_status(client: Client, output: Output, connection: str) -> int:
    try:
        result = await client.call_tool(HOST_STATUS_TOOL, {})
    except MCPError as error:
        return output.host_error(_request_failure(error))
    if result.is_error:
        return output.host_error(_error_payload(result))
    if output.machine:
        output.json(result.structured_content)  # as the host sent it, fields unknown here too
        return EXIT_OK
    try:
        status = HostStatusView.model_validate(result.structured_content)
    except ValidationError as error:
        raise CliError(
            f"{HOST_STATUS_TOOL} answered in an unexpected shape ({error.error_count()} "
            "problems). Is this an AIOS host? Try `aios tools`."
        ) from error
    return output.status(status, connection)


async def list_tools(client: Client, output: Output, substring: str | None) -> int:
    try:
        tools = await _all_pages(lambda cursor: client.list_tools(cursor=cursor), _tools_page)
    except MCPError as error:
        return output.host_error(_request_failure(error))
    needle = (substring or "").lower()
    return output.tools([tool for tool in tools if needle in tool.name.lower()])


async def call_tool(client: Client, output: Output, tool: str, arguments: dict[str, object]) -> int:
    with output.progress(tool) as report:
        try:
            result = await client.call_tool(tool, arguments, progress_callback=report)
        except MCPError as error:
            return output.host_error(_request_failure(error))
    if result.is_error:
        return output.host_error(_error_payload(result))
    return output.call_result(result)


async def list_resources(client: Client, output: Output) -> int:
    try:
        resources = await _all_pages(
            lambda cursor: client.list_resources(cursor=cursor), _resources_page
        )
        templates = await _all_pages(
            lambda cursor: client.list_resource_templates(cursor=cursor), _templates_page
        )
    except MCPError as error:
        return output.host_error(_request_failure(error))
    return output.resources(resources, templates)


async def read_resource(client: Client, output: Output, uri: str) -> int:
    try:
        result = await client.read_resource(uri)
    except MCPError as error:
        return output.host_error(_request_failure(error))
    return output.contents(result)


def _tools_page(page: types.ListToolsResult) -> tuple[list[types.Tool], str | None]:
    return page.tools, page.next_cursor


def _resources_page(page: types.ListResourcesResult) -> tuple[list[types.Resource], str | None]:
    return page.resources, page.next_cursor


def _templates_page(
    page: types.ListResourceTemplatesResult,
) -> tuple[list[types.ResourceTemplate], str | None]:
    return page.resource_templates, page.next_cursor


async def _all_pages(
    fetch: Callable[[str | None], Awaitable[PageT]],
    unpack: Callable[[PageT], tuple[Sequence[ItemT], str | None]],
) -> list[ItemT]:
    """Every item of a paginated list, reading at most ``PAGES_MAX`` pages."""
    items: list[ItemT] = []
    cursor: str | None = None
    for _ in range(PAGES_MAX):
        page_items, cursor = unpack(await fetch(cursor))
        items.extend(page_items)
        if cursor is None:
            return items
    raise CliError(f"The host's list goes on past {PAGES_MAX} pages; stopped reading.")


def _error_payload(result: types.CallToolResult) -> ErrorPayload:
    """The ``{code, message, details}`` of an error result; built from its text when a
    non-AIOS server answered without one."""
    assert result.is_error, result
    try:
        return ErrorPayload.model_validate(result.structured_content)
    except ValidationError:
        text = " ".join(b.text for b in result.content if isinstance(b, types.TextContent))
        return ErrorPayload(code="tool_failed", message=text.strip() or "The tool failed.")


def _request_failure(error: MCPError) -> ErrorPayload:
    """A JSON-RPC error as the AIOS error it carries (the host puts one in ``data``).

    Raises:
        CliError: the connection closed: the host is gone, nothing answered the request.
    """
    if error.code == types.CONNECTION_CLOSED:
        raise CliError(
            "The host closed the connection before answering. `aios status` shows whether it "
            "still runs."
        ) from error
    try:
        return ErrorPayload.model_validate(error.data)
    except ValidationError:
        code = _RPC_CODES.get(error.code, "internal")
        return ErrorPayload(code=code, message=error.message or "The request failed.")
