"""``aios-host``: run the AIOS host (stdio for Claude Desktop and IDEs, or HTTP + SSE).

    aios-host                              # stdio, built-in layout
    aios-host --transport http --port 8765 # Streamable HTTP at /mcp, SSE at /sse
    aios-host --config layout.toml         # compose the servers the file lists

On HTTP without ``AIOS_AUTH_TOKEN`` the host makes a random token for this boot and writes the
URL and token to ``$AIOS_HOME/host.json`` (mode 0600), where the ``aios`` CLI finds them.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import sys
from pathlib import Path
from typing import Any

import anyio
from pydantic import SecretStr

from aios_host.catalog import CollisionError
from aios_host.config import HostLayout, HostSettings, builtin_layout, load_layout
from aios_host.server import build_host_server
from aios_shared.config import load_settings, read_config_file, server_argument_parser
from aios_shared.errors import AiosError
from aios_shared.runner import serve
from aios_shared.telemetry import configure_logging

logger = logging.getLogger("aios_host")

EXIT_CONFIG_ERROR = 2


def parse_flags(argv: list[str] | None) -> dict[str, Any]:
    parser = server_argument_parser("aios-host", __doc__.split("\n")[0])
    parser.add_argument(
        "--no-auth",
        dest="require_auth",
        action="store_const",
        const=False,
        help="serve HTTP without a bearer token (loopback only)",
    )
    return vars(parser.parse_args(argv))


def build_settings(flags: dict[str, Any]) -> tuple[HostSettings, HostLayout]:
    """Settings from defaults < the layout file's [host] table < AIOS_* < flags; the layout from
    the file, else the built-in AIOS layout."""
    config_file: Path | None = flags.get("config") or (
        Path(os.environ["AIOS_CONFIG"]) if os.environ.get("AIOS_CONFIG") else None
    )
    file_layer = read_config_file(config_file).get("host", {}) if config_file else {}
    settings = load_settings(HostSettings, flags={**file_layer, **_given(flags)})
    layout = load_layout(config_file) if config_file else builtin_layout()
    if settings.transport != "stdio" and not settings.require_auth:
        settings = settings.model_copy(update={"auth_token": None})
    elif settings.transport != "stdio" and settings.auth_token is None:
        settings = settings.model_copy(update={"auth_token": SecretStr(secrets.token_urlsafe(32))})
    return settings, layout


def _given(flags: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in flags.items() if value is not None}


def _write_state_file(settings: HostSettings, url: str) -> None:
    """Where the CLI finds a running host: URL and token, readable by this user only."""
    token = settings.auth_token.get_secret_value() if settings.auth_token else None
    settings.home.mkdir(parents=True, exist_ok=True)
    path = settings.home / "host.json"
    partial = path.with_name("host.json.partial")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump(
            {"url": url, "token": token, "pid": os.getpid()},
            handle,
        )
    partial.replace(path)


async def run(settings: HostSettings, layout: HostLayout) -> None:
    server = build_host_server(settings, layout)

    def publish(url: str) -> None:
        if settings.state_file:
            _write_state_file(settings, url)
        logger.info("host.serving", extra={"url": url})

    try:
        await serve(server, settings, on_listening=publish)
    finally:
        _remove_state_file(settings)


def _remove_state_file(settings: HostSettings) -> None:
    """On a clean stop, remove host.json if it still describes this process."""
    path = settings.home / "host.json"
    try:
        if json.loads(path.read_text(encoding="utf-8")).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        return


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    found: list[BaseException] = []
    for error in group.exceptions:
        found.extend(_leaves(error) if isinstance(error, BaseExceptionGroup) else [error])
    return found


def main(argv: list[str] | None = None) -> None:
    if sys.flags.optimize:
        sys.exit("aios-host: run without -O (assertions guard invariants)")
    flags = parse_flags(argv)
    try:
        settings, layout = build_settings(flags)
    except AiosError as error:
        sys.stderr.write(f"aios-host: {error.for_caller()}\n")
        sys.exit(EXIT_CONFIG_ERROR)
    configure_logging("host", settings.log_level)
    try:
        anyio.run(run, settings, layout)
    except* CollisionError as group:
        collisions = "; ".join(str(error) for error in _leaves(group))
        sys.stderr.write(f"aios-host: name collision: {collisions}\n")
        sys.exit(EXIT_CONFIG_ERROR)
    except* KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
