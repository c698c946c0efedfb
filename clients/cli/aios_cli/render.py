"""Output: rich tables and panels for people, plain JSON on stdout for scripts (``--json``).

Errors always go to stderr in red for people; with ``--json`` a host error's structured content
``{code, message, details}`` also goes to stdout so a script can branch on ``code``.
"""

from __future__ import annotations

import base64
import binascii
import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import mcp_types as types
from mcp.shared.dispatcher import ProgressFnT
from rich.console import Console
from rich.json import JSON
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskProgressColumn, TextColumn
from rich.table import Table
from rich.text import Text

from aios_cli.errors import EXIT_HOST_ERROR, EXIT_OK, CliError
from aios_cli.models import ChildView, HostStatusView
from aios_shared.errors import ErrorPayload

__all__ = ["Output"]

_STATE_STYLES = {
    "running": "green",
    "starting": "yellow",
    "restarting": "yellow",
    "failed": "bold red",
    "stopped": "dim",
}


@dataclass(frozen=True)
class Output:
    """Where and how a command reports: ``machine`` is ``--json``."""

    machine: bool
    stdout: Console
    stderr: Console

    def json(self, value: object) -> None:
        """One JSON document on stdout (not through rich: no wrapping, no markup)."""
        sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")
        sys.stdout.flush()

    def host_error(self, payload: ErrorPayload) -> int:
        """Report an error the host answered; the exit code for it."""
        self.stderr.print(Text(f"{payload.code}: {payload.message}", style="red"), soft_wrap=True)
        if self.machine:
            self.json(payload.model_dump(mode="json"))
        return EXIT_HOST_ERROR

    def cli_error(self, error: CliError) -> None:
        self.stderr.print(Text(f"aios: {error.message}", style="red"), soft_wrap=True)

    @contextmanager
    def progress(self, label: str) -> Iterator[ProgressFnT | None]:
        """A progress line on stderr fed by the call's progress notifications (people at a
        terminal only: elsewhere the line would only leave blank lines behind)."""
        if self.machine or not self.stderr.is_terminal:
            yield None
            return
        columns = (
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
        )
        # No auto-refresh: no background thread; each notification redraws the line.
        with Progress(*columns, console=self.stderr, transient=True, auto_refresh=False) as bar:
            task = bar.add_task(label, total=None)

            async def report(progress: float, total: float | None, message: str | None) -> None:
                # The SDK runs each callback as its own task: one may land after the call ended.
                if not bar.live.is_started:
                    return
                description = f"{label}: {message}" if message else label
                bar.update(task, completed=progress, total=total, description=description)
                bar.refresh()

            yield report

    def status(self, status: HostStatusView, connection: str) -> int:
        assert not self.machine, "machine output prints the host's own document"
        header = Text.assemble(
            ("AIOS host ", "bold"),
            (status.name, "bold cyan"),
            (f"  pid {status.pid}  up {_duration(status.uptime_s)}  {status.tools} tools\n", ""),
            (connection, "dim"),
        )
        self.stdout.print(header)
        if not status.children:
            self.stdout.print(Text("No child servers: the layout lists none.", style="dim"))
            return EXIT_OK
        self.stdout.print(_children_table(status.children))
        return EXIT_OK

    def tools(self, tools: Sequence[types.Tool]) -> int:
        if self.machine:
            self.json([_wire(tool) for tool in tools])
            return EXIT_OK
        table = Table("Tool", "Description", title=f"{len(tools)} tools", title_justify="left")
        for tool in tools:
            table.add_row(Text(tool.name, style="bold"), _first_line(tool.description))
        self.stdout.print(table)
        return EXIT_OK

    def call_result(self, result: types.CallToolResult) -> int:
        """Show a successful tool result (``is_error`` results go to ``host_error``)."""
        assert not result.is_error, result
        if self.machine:
            structured = result.structured_content
            self.json(structured if structured is not None else _wire(result))
            return EXIT_OK
        if not result.content and result.structured_content is not None:
            self.stdout.print(JSON.from_data(result.structured_content))
        for block in result.content:
            self._content_block(block)
        return EXIT_OK

    def _content_block(self, block: types.ContentBlock) -> None:
        if isinstance(block, types.TextContent):
            self.stdout.print(block.text, markup=False, highlight=False, soft_wrap=True)
        elif isinstance(block, types.ImageContent | types.AudioContent):
            size = _decoded_size(block.data)
            self.stdout.print(Text(f"[{block.type}: {block.mime_type}, {size} bytes]", "dim"))
        elif isinstance(block, types.ResourceLink):
            self.stdout.print(Text(f"[resource link: {block.uri}]", "dim"))
        else:
            self._resource_contents(block.resource)

    def resources(
        self, resources: Sequence[types.Resource], templates: Sequence[types.ResourceTemplate]
    ) -> int:
        if self.machine:
            self.json(
                {
                    "resources": [_wire(item) for item in resources],
                    "resourceTemplates": [_wire(item) for item in templates],
                }
            )
            return EXIT_OK
        table = Table("URI", "Type", "Description", title=f"{len(resources)} resources")
        table.title_justify = "left"
        for resource in resources:
            table.add_row(
                Text(str(resource.uri), style="bold"),
                resource.mime_type or "",
                _first_line(resource.description),
            )
        self.stdout.print(table)
        if templates:
            listed = Table("URI template", "Description", title=f"{len(templates)} templates")
            listed.title_justify = "left"
            for template in templates:
                listed.add_row(
                    Text(template.uri_template, style="bold"), _first_line(template.description)
                )
            self.stdout.print(listed)
        return EXIT_OK

    def contents(self, result: types.ReadResourceResult) -> int:
        if self.machine:
            self.json(_wire(result))
            return EXIT_OK
        for item in result.contents:
            self._resource_contents(item)
        return EXIT_OK

    def _resource_contents(
        self, item: types.TextResourceContents | types.BlobResourceContents
    ) -> None:
        if isinstance(item, types.TextResourceContents):
            self.stdout.print(item.text, markup=False, highlight=False, soft_wrap=True)
            return
        size = _decoded_size(item.blob)
        mime = item.mime_type or "binary"
        note = f"[{item.uri}: {mime}, {size} bytes; --json shows it base64-encoded]"
        self.stdout.print(Text(note, style="dim"))


def _children_table(children: Sequence[ChildView]) -> Table:
    table = Table()
    table.add_column("Server", overflow="fold")
    for heading in ("State", "PID", "Tools", "Restarts"):
        table.add_column(heading)
    # URLs are copied from here: keep each on one line and whole; the other columns wrap.
    endpoints = [child.url or child.transport for child in children]
    table.add_column("Endpoint", no_wrap=True, min_width=max(len(item) for item in endpoints))
    table.caption = "Restarts: in the current period / in total."
    for child, endpoint in zip(children, endpoints, strict=True):
        server = Text(child.name, style="bold")
        if child.server_info:
            server.append(f"\n{child.server_info}", style="dim")
        state = Text(child.state, style=_STATE_STYLES.get(child.state, ""))
        if child.detail:
            state.append(f"\n{child.detail}", style="dim")
        table.add_row(
            server,
            state,
            str(child.pid) if child.pid is not None else "-",
            str(child.tools),
            f"{child.restarts_in_period} / {child.restarts_total}",
            endpoint,
        )
    return table


def _wire(item: types.Result | types.Tool | types.Resource | types.ResourceTemplate) -> object:
    """The item as it travels on the wire (camelCase, nothing unset)."""
    return item.model_dump(mode="json", by_alias=True, exclude_none=True)


def _first_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[0] if lines else ""


def _decoded_size(data: str) -> int | str:
    try:
        return len(base64.b64decode(data, validate=True))
    except binascii.Error:
        return "?"


def _duration(seconds: float) -> str:
    assert seconds >= 0, seconds
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, second = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {second} s"
    hours, minute = divmod(minutes, 60)
    return f"{hours} h {minute} min"
