"""aios: look at and drive an AIOS host from the shell.

  aios status                              the host and its child servers
  aios tools [SUBSTRING]                   tools: name and first line of the description
  aios call TOOL ['{"a": 2}'] [--arg b=3]  call a tool (--json '{...}' also takes the arguments)
  aios resources                           resources and resource templates
  aios read URI                            a resource's contents

Which host: --url/AIOS_URL with --token/AIOS_TOKEN (Streamable HTTP); else the one named by
$AIOS_HOME/host.json (written by `aios-host --transport http`) while it runs; else a host spawned
over stdio for this command only (--spawn or --config FILE force that).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Final

import anyio
from mcp import Client
from rich.console import Console

from aios_cli import commands
from aios_cli.connect import connect
from aios_cli.errors import EXIT_USAGE, CliError, find_cli_error, leaves
from aios_cli.render import Output
from aios_cli.target import Target, TargetRequest, choose_target

__all__ = ["main", "run"]

Command = Callable[[Client, Output], Awaitable[int]]

DEFAULT_TIMEOUT_S: Final = 300.0
EXIT_INTERRUPTED: Final = 130
# ``call --json`` with no object after it: machine output only.
_NO_ARGUMENTS: Final = ""


def main(argv: list[str] | None = None) -> None:
    if sys.flags.optimize:
        sys.exit("aios: run without -O (assertions guard invariants)")
    sys.exit(run(argv, os.environ))


def run(argv: list[str] | None, environment: Mapping[str, str]) -> int:
    """Parse, connect, run one command; the exit code."""
    namespace = build_parser().parse_args(argv)
    call_json: str | None = getattr(namespace, "call_json", None)
    output = Output(
        machine=bool(namespace.json) or call_json is not None,
        stdout=Console(),
        stderr=Console(stderr=True),
    )
    try:
        arguments = (
            call_arguments(namespace.arguments, call_json, namespace.arg or [])
            if namespace.command == "call"
            else {}
        )
        target = choose_target(
            TargetRequest(
                url=namespace.url,
                token=namespace.token,
                home=namespace.home,
                config=namespace.config,
                spawn=bool(namespace.spawn),
                environment=environment,
            )
        )
        command = _command(namespace, target, arguments)
        return anyio.run(_execute, target, float(namespace.timeout), command, output)
    except (CliError, BaseExceptionGroup) as error:
        failure = find_cli_error(error)
        if failure is None:
            if any(isinstance(leaf, KeyboardInterrupt) for leaf in leaves(error)):
                return EXIT_INTERRUPTED
            raise
        output.cli_error(failure)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


async def _execute(target: Target, timeout_s: float, command: Command, output: Output) -> int:
    async with connect(target, timeout_s) as client:
        return await command(client, output)


def _command(
    namespace: argparse.Namespace, target: Target, arguments: dict[str, object]
) -> Command:
    """The chosen command with its arguments bound."""
    name: str = namespace.command
    if name == "status":
        return functools.partial(commands.show_status, connection=target.describe())
    if name == "tools":
        return functools.partial(commands.list_tools, substring=namespace.substring)
    if name == "call":
        return functools.partial(commands.call_tool, tool=namespace.tool, arguments=arguments)
    if name == "resources":
        return commands.list_resources
    assert name == "read", name
    return functools.partial(commands.read_resource, uri=namespace.uri)


def call_arguments(
    positional: str | None, after_json: str | None, pairs: list[str]
) -> dict[str, object]:
    """The tool arguments: one JSON object (positional or right after ``--json``), then each
    ``--arg key=value`` on top (the value is JSON when it parses, else a string).

    Raises:
        CliError: malformed JSON, not an object, given twice, or a pair without ``=``.
    """
    texts = [text for text in (positional, after_json) if text]
    if len(texts) > 1:
        raise CliError("Tool arguments given twice: pass one JSON object, and --arg for more.")
    arguments = _json_object(texts[0]) if texts else {}
    for pair in pairs:
        key, equals, value = pair.partition("=")
        if not equals or not key:
            raise CliError(f"--arg {pair!r}: expected KEY=VALUE, e.g. --arg limit=5.")
        arguments[key] = _json_or_text(value)
    return arguments


def _json_object(text: str) -> dict[str, object]:
    try:
        parsed: object = json.loads(text)
    except json.JSONDecodeError as error:
        raise CliError(
            f"The tool arguments are not valid JSON: {error.msg} at line {error.lineno} column "
            f'{error.colno}. Pass one object, e.g. \'{{"a": 2, "b": 3}}\' (quote it for the shell).'
        ) from error
    if not isinstance(parsed, dict):
        raise CliError(
            f"The tool arguments must be a JSON object, not {type(parsed).__name__}: "
            'e.g. \'{"a": 2, "b": 3}\'.'
        )
    return {str(key): value for key, value in parsed.items()}


def _json_or_text(value: str) -> object:
    try:
        parsed: object = json.loads(value)
    except json.JSONDecodeError:
        return value
    return parsed


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aios",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Exit codes: 0 ok, 1 the host answered an error, 2 usage or connection problem.",
    )
    _add_connection_options(parser, suppress=False)
    parser.add_argument("--json", action="store_true", help="print machine JSON on stdout")
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def subcommand(name: str, help_text: str, *, json_flag: bool = True) -> argparse.ArgumentParser:
        sub = subcommands.add_parser(name, help=help_text, description=help_text)
        _add_connection_options(sub, suppress=True)
        if json_flag:
            sub.add_argument(
                "--json", action="store_true", default=argparse.SUPPRESS, help="machine JSON"
            )
        return sub

    subcommand("status", "Show the host and its child servers.")
    tools = subcommand("tools", "List tools: name and the first line of the description.")
    tools.add_argument("substring", nargs="?", help="only tools whose name contains this")
    call = subcommand("call", "Call a tool and show its result.", json_flag=False)
    call.add_argument("tool", help="the tool's name, e.g. memory_save")
    call.add_argument("arguments", nargs="?", help="the arguments as one JSON object")
    call.add_argument(
        "--arg",
        action="append",
        metavar="KEY=VALUE",
        help="one argument (repeatable); VALUE is JSON if it parses, else a string",
    )
    call.add_argument(
        "--json",
        dest="call_json",
        nargs="?",
        const=_NO_ARGUMENTS,
        metavar="ARGUMENTS",
        help="print machine JSON; a JSON object right after it is the arguments",
    )
    subcommand("resources", "List resources and resource templates.")
    read = subcommand("read", "Print a resource's contents.")
    read.add_argument("uri", help="the resource URI, e.g. aios://host/status")
    return parser


def _add_connection_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """The same options before or after the command; after it they override."""

    def default(value: object) -> object:
        return argparse.SUPPRESS if suppress else value

    parser.add_argument("--url", default=default(None), help="host URL (env AIOS_URL)")
    parser.add_argument("--token", default=default(None), help="bearer token (env AIOS_TOKEN)")
    parser.add_argument(
        "--home",
        type=Path,
        default=default(None),
        metavar="DIR",
        help="where host.json lives (env AIOS_HOME)",
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=default(None),
        metavar="FILE",
        help="spawn a host with this layout file",
    )
    parser.add_argument(
        "--spawn", action="store_true", default=default(False), help="always spawn a host"
    )
    parser.add_argument(
        "--timeout",
        type=_positive_seconds,
        default=default(DEFAULT_TIMEOUT_S),
        metavar="SECONDS",
        help=f"longest wait for each answer (default {DEFAULT_TIMEOUT_S:g})",
    )


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from error
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r}: the timeout must be above 0 seconds")
    return value


if __name__ == "__main__":
    main()
