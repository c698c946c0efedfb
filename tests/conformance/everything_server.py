"""An "everything"-shaped MCP server of ours: every fixture the official conformance suite calls,
plus the small tools the host tests drive (add, slow_count, wait_for_cancel, crash, pid).

    python tests/conformance/everything_server.py [--transport http] [--port N] [--ready-file F]

Served by aios_shared.runner, so it runs standalone or as a child of the host exactly like our
subsystem servers (over HTTP it takes its bearer token from AIOS_AUTH_TOKEN).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import warnings
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
from mcp.server import ServerRequestContext
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.prompts.base import Message, UserMessage
from mcp.shared.exceptions import MCPDeprecationWarning
from pydantic import BaseModel, Field

from aios_shared.config import ServerSettings, load_settings
from aios_shared.runner import lowlevel, serve
from aios_shared.telemetry import configure_logging

# A 1x1 PNG and a minimal WAV: the payloads the suite checks for.
PNG_BASE64 = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAAB"
    "JRU5ErkJggg=="
)
WAV_BASE64 = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA="


class Reply(BaseModel):
    response: str = Field(description="What the user answered")


class Defaults(BaseModel):
    """Every primitive type with a default (SEP-1034)."""

    name: str = Field(default="John Doe", description="User name")
    age: int = Field(default=30, description="User age")
    score: float = Field(default=95.5, description="User score")
    status: str = Field(
        default="active",
        description="User status",
        json_schema_extra={"enum": ["active", "inactive", "pending"]},
    )
    verified: bool = Field(default=True, description="Verification status")


class EnumChoices(BaseModel):
    """The enum shapes of SEP-1330."""

    untitledSingle: str = Field(
        description="Simple enum without titles",
        json_schema_extra={"enum": ["active", "inactive", "pending"]},
    )
    titledSingle: str = Field(
        description="Enum with titled options (oneOf)",
        json_schema_extra={
            "oneOf": [
                {"const": "low", "title": "Low Priority"},
                {"const": "medium", "title": "Medium Priority"},
                {"const": "high", "title": "High Priority"},
            ]
        },
    )
    untitledMulti: list[str] = Field(
        description="Multi-select without titles",
        json_schema_extra={"items": {"type": "string", "enum": ["read", "write", "execute"]}},
    )
    titledMulti: list[str] = Field(
        description="Multi-select with titled options",
        json_schema_extra={
            "items": {
                "anyOf": [
                    {"const": "feature", "title": "New Feature"},
                    {"const": "bug", "title": "Bug Fix"},
                    {"const": "docs", "title": "Documentation"},
                ]
            }
        },
    )
    legacyEnum: str = Field(
        description="Legacy enum with enumNames",
        json_schema_extra={
            "enum": ["small", "medium", "large"],
            "enumNames": ["Small Size", "Medium Size", "Large Size"],
        },
    )


def _register_conformance_tools(server: MCPServer) -> None:
    @server.tool()
    def test_simple_text() -> str:
        """Answers with one text content."""
        return "This is a simple text response for testing."

    @server.tool()
    def test_image_content() -> list[types.ImageContent]:
        """Answers with one PNG image content."""
        return [types.ImageContent(type="image", data=PNG_BASE64, mime_type="image/png")]

    @server.tool()
    def test_audio_content() -> list[types.AudioContent]:
        """Answers with one WAV audio content."""
        return [types.AudioContent(type="audio", data=WAV_BASE64, mime_type="audio/wav")]

    @server.tool()
    def test_embedded_resource() -> list[types.EmbeddedResource]:
        """Answers with an embedded text resource."""
        contents = types.TextResourceContents(
            uri="test://embedded-resource",
            mime_type="text/plain",
            text="This is an embedded resource content.",
        )
        return [types.EmbeddedResource(type="resource", resource=contents)]

    @server.tool()
    def test_multiple_content_types() -> list[
        types.TextContent | types.ImageContent | types.EmbeddedResource
    ]:
        """Answers with text, an image and an embedded resource."""
        contents = types.TextResourceContents(
            uri="test://mixed-content-resource",
            mime_type="application/json",
            text='{"test": "data", "value": 123}',
        )
        return [
            types.TextContent(type="text", text="Multiple content types test:"),
            types.ImageContent(type="image", data=PNG_BASE64, mime_type="image/png"),
            types.EmbeddedResource(type="resource", resource=contents),
        ]

    @server.tool()
    async def test_tool_with_logging(ctx: Context) -> str:
        """Sends three log messages while it runs."""
        for message in (
            "Tool execution started",
            "Tool processing data",
            "Tool execution completed",
        ):
            await ctx.info(message)
            await anyio.sleep(0.02)
        return "Tool with logging executed successfully"

    @server.tool()
    async def test_tool_with_progress(ctx: Context) -> str:
        """Reports progress 0, 50 and 100 of 100."""
        for step in (0, 50, 100):
            await ctx.report_progress(step, 100, f"Completed step {step} of 100")
            await anyio.sleep(0.02)
        meta = ctx.request_context.meta or {}
        return str(meta.get("progress_token", meta.get("progressToken", 0)))

    @server.tool()
    def test_error_handling() -> str:
        """Always fails, to test error results."""
        raise RuntimeError("This tool intentionally returns an error for testing")

    @server.tool()
    async def test_sampling(prompt: str, ctx: Context) -> str:
        """Asks the client's model to complete the prompt (sampling)."""
        result = await ctx.session.create_message(
            messages=[
                types.SamplingMessage(
                    role="user", content=types.TextContent(type="text", text=prompt)
                )
            ],
            max_tokens=100,
        )
        content = result.content
        text = content.text if isinstance(content, types.TextContent) else "No response"
        return f"LLM response: {text}"

    @server.tool()
    async def test_elicitation(message: str, ctx: Context) -> str:
        """Asks the user for a reply (elicitation)."""
        result = await ctx.elicit(message=message, schema=Reply)
        content = result.data.model_dump_json() if result.action == "accept" else "{}"
        return f"User response: action={result.action}, content={content}"

    @server.tool()
    async def test_elicitation_sep1034_defaults(ctx: Context) -> str:
        """Elicits a form whose fields all have defaults (SEP-1034)."""
        result = await ctx.elicit(message="Please provide user information", schema=Defaults)
        content = result.data.model_dump_json() if result.action == "accept" else "{}"
        return f"Elicitation result: action={result.action}, content={content}"

    @server.tool()
    async def test_elicitation_sep1330_enums(ctx: Context) -> str:
        """Elicits a form with every enum shape (SEP-1330)."""
        result = await ctx.elicit(
            message="Please select values using different enum schema types", schema=EnumChoices
        )
        content = result.data.model_dump_json() if result.action == "accept" else "{}"
        return f"Elicitation completed: action={result.action}, content={content}"


def _register_host_test_tools(server: MCPServer) -> None:
    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @server.tool()
    async def slow_count(steps: int, delay_s: float, ctx: Context) -> str:
        """Count to `steps`, reporting progress after each step."""
        for step in range(1, steps + 1):
            await anyio.sleep(delay_s)
            await ctx.report_progress(step, steps, f"step {step} of {steps}")
        return f"counted to {steps}"

    @server.tool()
    async def wait_for_cancel(marker: str) -> str:
        """Block until cancelled; then append `marker` to $AIOS_TEST_CANCEL_LOG."""
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            log = os.environ.get("AIOS_TEST_CANCEL_LOG")
            if log:
                with anyio.CancelScope(shield=True):
                    async with await anyio.open_file(log, "a", encoding="utf-8") as handle:
                        await handle.write(marker + "\n")
            raise
        return "not reached"

    @server.tool()
    def crash() -> str:
        """End this server process at once (exit code 1), as a crash would."""
        os._exit(1)

    @server.tool()
    def pid() -> int:
        """This server's process id."""
        return os.getpid()


def _register_resources_and_prompts(server: MCPServer) -> None:
    @server.resource("test://static-text", mime_type="text/plain")
    def static_text() -> str:
        """A static text resource."""
        return "This is the content of the static text resource."

    @server.resource("test://static-binary", mime_type="image/png")
    def static_binary() -> bytes:
        """A static binary resource (a PNG)."""
        return base64.b64decode(PNG_BASE64)

    @server.resource("test://template/{id}/data", mime_type="application/json")
    def templated(id: str) -> str:
        """A templated resource."""
        return json.dumps({"id": id, "templateTest": True, "data": f"Data for ID: {id}"})

    @server.resource("test://watched-resource", mime_type="text/plain")
    def watched() -> str:
        """A resource clients may subscribe to."""
        return "Watched resource content"

    @server.prompt()
    def test_simple_prompt() -> list[Message]:
        """A prompt without arguments."""
        return [UserMessage("This is a simple prompt for testing.")]

    @server.prompt()
    def test_prompt_with_arguments(arg1: str, arg2: str) -> list[Message]:
        """A prompt with two required arguments."""
        return [UserMessage(f"Prompt with arguments: arg1='{arg1}', arg2='{arg2}'")]

    @server.prompt()
    def test_prompt_with_embedded_resource(resourceUri: str) -> list[Message]:
        """A prompt that embeds a resource."""
        contents = types.TextResourceContents(
            uri=resourceUri, mime_type="text/plain", text="Embedded resource content for testing."
        )
        return [
            UserMessage(types.EmbeddedResource(type="resource", resource=contents)),
            UserMessage("Please process the embedded resource above."),
        ]

    @server.prompt()
    def test_prompt_with_image() -> list[Message]:
        """A prompt with an image."""
        return [
            UserMessage(types.ImageContent(type="image", data=PNG_BASE64, mime_type="image/png")),
            UserMessage("Please analyze the image above."),
        ]

    @server.completion()  # type: ignore[untyped-decorator, no-untyped-call]  # untyped in mcp 2.3
    async def complete(
        ref: types.PromptReference | types.ResourceTemplateReference,
        argument: types.CompletionArgument,
        context: types.CompletionContext | None,
    ) -> types.Completion:
        """No suggestions; the suite checks the shape only."""
        return types.Completion(values=[], total=0, has_more=False)


def _register_protocol_handlers(server: MCPServer) -> None:
    subscribed: set[str] = set()

    async def subscribe(
        ctx: ServerRequestContext[Any, Any], params: types.SubscribeRequestParams
    ) -> types.EmptyResult:
        subscribed.add(str(params.uri))
        return types.EmptyResult()

    async def unsubscribe(
        ctx: ServerRequestContext[Any, Any], params: types.UnsubscribeRequestParams
    ) -> types.EmptyResult:
        subscribed.discard(str(params.uri))
        return types.EmptyResult()

    async def set_level(
        ctx: ServerRequestContext[Any, Any], params: types.SetLevelRequestParams
    ) -> types.EmptyResult:
        return types.EmptyResult()

    inner = lowlevel(server)
    inner.add_request_handler("resources/subscribe", types.SubscribeRequestParams, subscribe)
    inner.add_request_handler("resources/unsubscribe", types.UnsubscribeRequestParams, unsubscribe)
    inner.add_request_handler("logging/setLevel", types.SetLevelRequestParams, set_level)


def build_server() -> MCPServer:
    server = MCPServer("mcp-conformance-test-server", version="1.0.0")
    _register_conformance_tools(server)
    _register_host_test_tools(server)
    _register_resources_and_prompts(server)
    _register_protocol_handlers(server)
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transport", choices=["stdio", "http", "sse"])
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    parser.add_argument("--ready-file", type=Path)
    flags = vars(parser.parse_args())
    settings = load_settings(ServerSettings, flags=flags)
    configure_logging("everything", "warning")
    # The logging capability is deprecated in 2026-07-28 but still in the handshake-era suite.
    warnings.filterwarnings("ignore", category=MCPDeprecationWarning)
    anyio.run(serve, build_server(), settings)


if __name__ == "__main__":
    main()
