"""An "everything"-shaped MCP server of ours: every fixture the official conformance suite
(npm ``@modelcontextprotocol/conformance`` 0.2.0-alpha.12) calls, for both spec versions, plus
the small tools the host tests drive (``add``, ``slow_count``, ``wait_for_cancel``, ``crash``,
``pid``).

    python tests/conformance/everything_server.py [--transport stdio|http|sse] [--host H]
        [--port N] [--ready-file F] [--log-level L]

Served by ``aios_shared.runner``, so it runs standalone or as a child of the host exactly like
our subsystem servers: over HTTP the bound ``/mcp`` URL goes to the ready file as JSON
(``{"url": ..., "pid": ...}``; port 0 picks a free port) and the bearer token comes from
``AIOS_AUTH_TOKEN`` (none: open, for the suite, which cannot send headers). Nothing is written to
stdout except the stdio protocol; logs go to stderr. ``AIOS_TEST_CANCEL_LOG`` names the file
``wait_for_cancel`` appends its marker to when cancelled.

The fixture names and payloads follow the suite's scenario sources and the python-sdk's
``examples/servers/everything-server``; what a scenario checks is noted next to its fixture.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Annotated, Any, Final

import anyio
import mcp_types as types
from mcp.server import ServerRequestContext
from mcp.server.mcpserver import Context, Elicit, MCPServer, Resolve, Sample
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.prompts import Prompt
from mcp.server.mcpserver.prompts.base import Message, UserMessage
from mcp.server.mcpserver.tools import Tool
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from mcp_types.version import is_version_at_least
from pydantic import BaseModel, Field

from aios_shared.config import ServerSettings, load_settings, server_argument_parser
from aios_shared.errors import AiosError
from aios_shared.runner import lowlevel, serve
from aios_shared.telemetry import configure_logging

# A 1x1 PNG and a minimal WAV: the payloads the suite checks for.
PNG_BASE64: Final = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAAB"
    "JRU5ErkJggg=="
)
WAV_BASE64: Final = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA="
MODERN_VERSION: Final = "2026-07-28"
HIDDEN_TOOL: Final = "test_hidden_tool"
HIDDEN_PROMPT: Final = "test_hidden_prompt"
CANCEL_LOG_WRITE_S: Final = 5.0

# The exact inputSchema the json-schema-2020-12 scenario expects to come back from tools/list
# unchanged (SEP-1613: $schema, $defs, additionalProperties; SEP-2106: $anchor, allOf/anyOf,
# if/then/else).
JSON_SCHEMA_2020_12: Final[dict[str, Any]] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "$defs": {
        "address": {
            "$anchor": "addressDef",
            "type": "object",
            "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
        }
    },
    "properties": {
        "name": {"type": "string"},
        "address": {"$ref": "#/$defs/address"},
        "contactMethod": {"type": "string", "enum": ["phone", "email"]},
        "phone": {"type": "string"},
        "email": {"type": "string"},
    },
    "allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
    "if": {"properties": {"contactMethod": {"const": "phone"}}, "required": ["contactMethod"]},
    "then": {"required": ["phone"]},
    "else": {"required": ["email"]},
    "additionalProperties": False,
}


class UserInfo(BaseModel):
    """The form the tools-call-elicitation scenario expects (and answers)."""

    username: str = Field(description="User's response")
    email: str = Field(description="User's email address")


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


def _text(result: types.CreateMessageResult) -> str:
    content = result.content
    return content.text if isinstance(content, types.TextContent) else "No response"


def _register_content_tools(server: MCPServer) -> None:
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
    def test_error_handling() -> str:
        """Always fails, to test error results."""
        raise ToolError("This tool intentionally returns an error for testing")


def _register_session_tools(server: MCPServer) -> None:
    """Fixtures of the handshake era: logs, progress, and mid-call sampling and elicitation."""

    @server.tool()
    async def test_tool_with_logging(ctx: Context) -> str:
        """Sends three log messages while it runs."""
        for message in ("Tool execution started", "Tool processing data"):
            await ctx.info(message)
            await anyio.sleep(0.02)
        await ctx.info("Tool execution completed")
        return "Tool with logging executed successfully"

    @server.tool()
    async def test_tool_with_progress(ctx: Context) -> str:
        """Reports progress 0, 50 and 100 of 100 and answers with the progress token."""
        for step in (0, 50, 100):
            await ctx.report_progress(step, 100, f"Completed step {step} of 100")
            await anyio.sleep(0.02)
        meta = ctx.request_context.meta or {}
        return str(meta.get("progress_token", meta.get("progressToken", 0)))

    @server.tool()
    async def test_sampling(prompt: str, ctx: Context) -> str:
        """Asks the client's model to complete the prompt (sampling)."""
        message = types.SamplingMessage(
            role="user", content=types.TextContent(type="text", text=prompt)
        )
        result = await ctx.session.create_message(messages=[message], max_tokens=100)
        return f"LLM response: {_text(result)}"

    @server.tool()
    async def test_elicitation(message: str, ctx: Context) -> str:
        """Asks the user for a reply (elicitation)."""
        result = await ctx.elicit(message=message, schema=UserInfo)
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

    @server.tool()
    async def test_reconnection(ctx: Context) -> str:
        """Closes its SSE stream mid-call so the client resumes with Last-Event-ID (SEP-1699).
        A no-op unless the transport keeps an event store."""
        await ctx.info("Before disconnect")
        await ctx.close_sse_stream()
        await anyio.sleep(0.2)
        await ctx.info("After reconnect")
        return "Reconnection test completed"


def _ask_capital() -> Sample:
    question = types.TextContent(type="text", text="What is the capital of France?")
    return Sample([types.SamplingMessage(role="user", content=question)], max_tokens=100)


def _ask_reply() -> Elicit[Reply]:
    return Elicit("What should the streaming fixture say?", Reply)


async def _hidden_tool() -> str:
    """Exists only between two calls of test_trigger_tool_change."""
    return "hidden"


def _hidden_prompt() -> str:
    """Exists only between two calls of test_trigger_prompt_change."""
    return "hidden"


def _register_stateless_tools(server: MCPServer) -> None:
    """Diagnostic hooks of the 2026-07-28 server-stateless scenario (SEP-2575)."""

    @server.tool()
    def test_missing_capability(
        answer: Annotated[types.CreateMessageResult, Resolve(_ask_capital)],
    ) -> str:
        """Needs the client's sampling capability; without it the SDK answers -32021."""
        return f"LLM response: {_text(answer)}"

    @server.tool()
    async def test_logging_tool(ctx: Context) -> str:
        """Logs one message; it reaches a 2026-07-28 client only when the request set a level."""
        await ctx.info("test_logging_tool ran")
        return "logged"

    @server.tool()
    def test_streaming_elicitation(
        reply: Annotated[Reply, Resolve(_ask_reply)],
    ) -> str:
        """Elicits a reply; on 2026-07-28 as an InputRequiredResult, never a request on the
        response stream."""
        return f"User response: {reply.response}"

    @server.tool()
    async def test_trigger_tool_change(ctx: Context) -> str:
        """Adds test_hidden_tool, or removes it when present, and announces tools/list_changed."""
        names = {tool.name for tool in await server.list_tools()}
        if HIDDEN_TOOL in names:
            server.remove_tool(HIDDEN_TOOL)
        else:
            server.add_tool(_hidden_tool, name=HIDDEN_TOOL)
        await ctx.notify_tools_changed()
        return f"{HIDDEN_TOOL} {'removed' if HIDDEN_TOOL in names else 'added'}"

    @server.tool()
    async def test_trigger_prompt_change(ctx: Context) -> str:
        """Adds test_hidden_prompt, or removes it when present, and announces
        prompts/list_changed."""
        names = {prompt.name for prompt in await server.list_prompts()}
        if HIDDEN_PROMPT in names:
            server.remove_prompt(HIDDEN_PROMPT)
        else:
            server.add_prompt(Prompt.from_function(_hidden_prompt, name=HIDDEN_PROMPT))
        await ctx.notify_prompts_changed()
        return f"{HIDDEN_PROMPT} {'removed' if HIDDEN_PROMPT in names else 'added'}"


def _header_parameter(header: str) -> Any:
    """A tool parameter that clients mirror into the ``Mcp-Param-<header>`` HTTP header."""
    return Field(
        description=f"Mirrored as Mcp-Param-{header}", json_schema_extra={"x-mcp-header": header}
    )


def _register_header_tool(server: MCPServer) -> None:
    @server.tool()
    def test_custom_headers(
        region: Annotated[str, _header_parameter("Region")],
        priority: Annotated[int, _header_parameter("Priority")] = 1,
    ) -> str:
        """Echoes parameters that clients mirror into Mcp-Param-* headers (SEP-2243)."""
        return f"region={region} priority={priority}"


def _json_schema_tool() -> Tool:
    """A tool listed with a hand-written JSON Schema 2020-12 inputSchema. MCPServer derives
    schemas from signatures only, so the listed schema is swapped in on the Tool itself."""

    def json_schema_2020_12_tool(
        name: str | None = None,
        address: dict[str, str] | None = None,
        contactMethod: str | None = None,
        phone: str | None = None,
        email: str | None = None,
    ) -> str:
        """Tool with JSON Schema 2020-12 features."""
        return f"contact {name or 'someone'} by {contactMethod or 'any method'}"

    tool = Tool.from_function(json_schema_2020_12_tool)
    return tool.model_copy(update={"parameters": JSON_SCHEMA_2020_12})


def _require_modern(ctx: Context) -> None:
    """The InputRequiredResult fixtures exist only from 2026-07-28 on."""
    version = ctx.protocol_version
    if version is None or not is_version_at_least(version, MODERN_VERSION):
        raise MCPError(
            code=types.INVALID_REQUEST,
            message=f"This fixture needs protocol {MODERN_VERSION}; the request used {version}.",
        )


def _ask(message: str, field: str, kind: str = "string") -> types.ElicitRequest:
    schema = {"type": "object", "properties": {field: {"type": kind}}, "required": [field]}
    return types.ElicitRequest(
        params=types.ElicitRequestFormParams(message=message, requested_schema=schema)
    )


def _sample(text: str, max_tokens: int) -> types.CreateMessageRequest:
    message = types.SamplingMessage(role="user", content=types.TextContent(type="text", text=text))
    return types.CreateMessageRequest(
        params=types.CreateMessageRequestParams(messages=[message], max_tokens=max_tokens)
    )


def _answer(ctx: Context, key: str, field: str) -> str | None:
    """The accepted elicitation answer to ``key``'s ``field``, or None when it is missing."""
    response = (ctx.input_responses or {}).get(key)
    if not isinstance(response, types.ElicitResult) or response.action != "accept":
        return None
    value = (response.content or {}).get(field)
    return None if value is None else str(value)


def _sampled(ctx: Context, key: str) -> str | None:
    response = (ctx.input_responses or {}).get(key)
    return _text(response) if isinstance(response, types.CreateMessageResult) else None


def _roots(ctx: Context, key: str) -> list[str] | None:
    response = (ctx.input_responses or {}).get(key)
    if not isinstance(response, types.ListRootsResult):
        return None
    return [str(root.uri) for root in response.roots]


def _round_state(ctx: Context) -> dict[str, Any]:
    """The multi-round fixture's decoded requestState; round 0 when absent or not its own."""
    try:
        state = json.loads(ctx.request_state or "{}")
    except ValueError:
        return {"round": 0}
    return state if isinstance(state, dict) and "round" in state else {"round": 0}


def _input_required(
    requests: dict[str, types.InputRequest], state: str | None = None
) -> types.InputRequiredResult:
    # The SDK's RequestStateBoundary seals ``state`` on the way out and verifies the echo, so a
    # tampered requestState never reaches the tool (it gets a JSON-RPC error instead).
    return types.InputRequiredResult(input_requests=requests, request_state=state)


def _register_input_required_tools(server: MCPServer) -> None:
    """The SEP-2322 fixtures: the tool asks by returning an InputRequiredResult and reads the
    answers from ``ctx.input_responses`` on the retry; a missing answer is asked again."""

    @server.tool()
    def test_input_required_result_elicitation(ctx: Context) -> str | types.InputRequiredResult:
        """Asks for the user's name (elicitation), then greets them."""
        _require_modern(ctx)
        name = _answer(ctx, "user_name", "name")
        if name is None:
            return _input_required({"user_name": _ask("What is your name?", "name")})
        return f"Hello, {name}!"

    @server.tool()
    def test_input_required_result_sampling(ctx: Context) -> str | types.InputRequiredResult:
        """Asks the client's model a question (sampling), then answers with its reply."""
        _require_modern(ctx)
        reply = _sampled(ctx, "capital_question")
        if reply is None:
            question = _sample("What is the capital of France?", 100)
            return _input_required({"capital_question": question})
        return f"LLM response: {reply}"

    @server.tool()
    def test_input_required_result_list_roots(ctx: Context) -> str | types.InputRequiredResult:
        """Asks for the client's roots, then lists them."""
        _require_modern(ctx)
        roots = _roots(ctx, "client_roots")
        if roots is None:
            return _input_required({"client_roots": types.ListRootsRequest()})
        return f"Roots: {', '.join(roots) or 'none'}"

    @server.tool()
    def test_input_required_result_request_state(
        ctx: Context,
    ) -> str | types.InputRequiredResult:
        """Asks for a confirmation with requestState, and completes only when the echoed state
        is the one it minted."""
        _require_modern(ctx)
        confirmed = _answer(ctx, "confirm", "ok")
        if confirmed is None or ctx.request_state != "request-state:confirm":
            confirm = _ask("Please confirm", "ok", kind="boolean")
            return _input_required({"confirm": confirm}, state="request-state:confirm")
        return f"state-ok: confirmed={confirmed}"

    @server.tool()
    def test_input_required_result_tampered_state(
        ctx: Context,
    ) -> str | types.InputRequiredResult:
        """Like the request-state fixture; a tampered requestState is refused by the SDK."""
        _require_modern(ctx)
        confirmed = _answer(ctx, "confirm", "ok")
        if confirmed is None or ctx.request_state != "tampered-state:confirm":
            confirm = _ask("Please confirm", "ok", kind="boolean")
            return _input_required({"confirm": confirm}, state="tampered-state:confirm")
        return f"state verified: confirmed={confirmed}"


def _register_multi_step_input_tools(server: MCPServer) -> None:
    """The SEP-2322 fixtures that ask several questions, at once or round after round."""

    @server.tool()
    def test_input_required_result_multiple_inputs(
        ctx: Context,
    ) -> str | types.InputRequiredResult:
        """Asks for a name, a sampled greeting and the roots at once."""
        _require_modern(ctx)
        name = _answer(ctx, "user_name", "name")
        greeting = _sampled(ctx, "greeting")
        roots = _roots(ctx, "client_roots")
        if name is None or greeting is None or roots is None:
            requests: dict[str, types.InputRequest] = {
                "user_name": _ask("What is your name?", "name"),
                "greeting": _sample("Generate a greeting", 50),
                "client_roots": types.ListRootsRequest(),
            }
            return _input_required(requests, state="multiple-inputs")
        return f"{greeting} {name} ({len(roots)} roots)"

    @server.tool()
    def test_input_required_result_multi_round(
        ctx: Context,
    ) -> str | types.InputRequiredResult:
        """Asks for a name, then a favourite colour, carrying the first answer in requestState."""
        _require_modern(ctx)
        state = _round_state(ctx)
        name = state.get("name") or _answer(ctx, "step1", "name")
        if name is None:
            step1 = _ask("Step 1: What is your name?", "name")
            return _input_required({"step1": step1}, state=json.dumps({"round": 1}))
        color = _answer(ctx, "step2", "color") if state["round"] == 2 else None
        if color is None:
            step2 = _ask("Step 2: What is your favorite color?", "color")
            return _input_required({"step2": step2}, json.dumps({"round": 2, "name": name}))
        return f"{name} likes {color}"

    @server.tool()
    def test_input_required_result_capabilities(
        ctx: Context,
    ) -> str | types.InputRequiredResult:
        """Asks only through the input kinds the client declared (sampling, elicitation)."""
        _require_modern(ctx)
        capabilities = ctx.client_capabilities or types.ClientCapabilities()
        requests: dict[str, types.InputRequest] = {}
        if capabilities.sampling is not None and _sampled(ctx, "capital_question") is None:
            requests["capital_question"] = _sample("What is the capital of France?", 100)
        if capabilities.elicitation is not None and _answer(ctx, "user_name", "name") is None:
            requests["user_name"] = _ask("What is your name?", "name")
        if requests:
            return _input_required(requests)
        return "answered through the declared capabilities"

    @server.prompt()
    def test_input_required_result_prompt(
        ctx: Context,
    ) -> list[Message] | types.InputRequiredResult:
        """A prompt that first asks what context to use (InputRequiredResult on prompts/get)."""
        _require_modern(ctx)
        context = _answer(ctx, "user_context", "context")
        if context is None:
            question = _ask("What context should the prompt use?", "context")
            return _input_required({"user_context": question})
        return [UserMessage(f"Use this context: {context}")]


def _register_host_test_tools(server: MCPServer, cancel_log: Path | None) -> None:
    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @server.tool()
    async def slow_count(steps: int, delay_s: float, ctx: Context) -> str:
        """Count to `steps`, waiting `delay_s` seconds and reporting progress after each step."""
        for step in range(1, steps + 1):
            await anyio.sleep(delay_s)
            await ctx.report_progress(step, steps, f"step {step} of {steps}")
        return f"counted to {steps}"

    @server.tool()
    async def wait_for_cancel(marker: str) -> str:
        """Block until cancelled; then append `marker` to $AIOS_TEST_CANCEL_LOG (when set)."""
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            if cancel_log is not None:
                with anyio.move_on_after(CANCEL_LOG_WRITE_S, shield=True):
                    async with await anyio.open_file(cancel_log, "a", encoding="utf-8") as log:
                        await log.write(marker + "\n")
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


def _register_resources(server: MCPServer) -> None:
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

    @server.completion()  # type: ignore[untyped-decorator, no-untyped-call]  # untyped in mcp 2.3
    async def complete(
        ref: types.PromptReference | types.ResourceTemplateReference,
        argument: types.CompletionArgument,
        context: types.CompletionContext | None,
    ) -> types.Completion:
        """No suggestions; the suite checks the shape only."""
        return types.Completion(values=[], total=0, has_more=False)


def _register_prompts(server: MCPServer) -> None:
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


def _register_protocol_handlers(server: MCPServer) -> None:
    """resources/subscribe, resources/unsubscribe and logging/setLevel: MCPServer has no public
    API for them in mcp 2.3, so they go to the low-level server (handshake era only)."""
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


def build_server(cancel_log: Path | None = None) -> MCPServer:
    """The fixture server; ``cancel_log`` is where ``wait_for_cancel`` records cancellations."""
    server = MCPServer("mcp-conformance-test-server", version="1.0.0", tools=[_json_schema_tool()])
    _register_content_tools(server)
    _register_session_tools(server)
    _register_stateless_tools(server)
    _register_header_tool(server)
    _register_input_required_tools(server)
    _register_multi_step_input_tools(server)
    _register_host_test_tools(server, cancel_log)
    _register_resources(server)
    _register_prompts(server)
    _register_protocol_handlers(server)
    return server


def main(argv: list[str] | None = None) -> None:
    parser = server_argument_parser("everything-server", __doc__ or "")
    arguments = parser.parse_args(argv)
    flags = {
        "transport": arguments.transport,
        "host": arguments.host,
        "port": arguments.port,
        "ready_file": arguments.ready_file,
        "home": arguments.home,
        "log_level": arguments.log_level,
    }
    try:
        settings = load_settings(ServerSettings, config_file=arguments.config, flags=flags)
    except AiosError as error:
        sys.exit(f"everything-server: {error.for_caller()}")
    configure_logging("everything", arguments.log_level or "warning")
    # Logging is deprecated in 2026-07-28 but still part of the handshake-era suite.
    warnings.filterwarnings("ignore", category=MCPDeprecationWarning)
    cancel_log = os.environ.get("AIOS_TEST_CANCEL_LOG")
    server = build_server(Path(cancel_log) if cancel_log else None)
    anyio.run(serve, server, settings)


if __name__ == "__main__":
    main()
