"""Which host a command talks to, decided once from the flags and the environment.

    --url / AIOS_URL (+ --token / AIOS_TOKEN)  a running host over Streamable HTTP
    --spawn or --config FILE                   a fresh host over stdio, for this command only
    $AIOS_HOME/host.json with a live pid       the host that wrote it (`aios-host --transport http`)
    otherwise                                  a fresh host over stdio

A flag beats its environment variable; ``--spawn`` and ``--config`` beat ``AIOS_URL`` but
conflict with ``--url``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit, urlunsplit

from pydantic import ValidationError

from aios_cli.errors import CliError
from aios_cli.models import HostFile
from aios_shared.config import default_home

__all__ = ["HttpTarget", "SpawnTarget", "Target", "TargetRequest", "choose_target"]

HOST_FILE_NAME: Final = "host.json"
MCP_PATH: Final = "/mcp"


@dataclass(frozen=True)
class TargetRequest:
    """What the user asked for: flags (``None`` when not given) and the environment."""

    url: str | None
    token: str | None
    home: Path | None
    config: Path | None
    spawn: bool
    environment: Mapping[str, str]


@dataclass(frozen=True)
class HttpTarget:
    """A running host reached over Streamable HTTP."""

    url: str
    token: str | None
    origin: str  # where the URL came from, for messages: "--url", "AIOS_URL" or a host.json path
    home: Path

    def describe(self) -> str:
        return f"{self.url} (from {self.origin})"


@dataclass(frozen=True)
class SpawnTarget:
    """A host started over stdio for the duration of one command."""

    command: str
    args: tuple[str, ...]
    environment: Mapping[str, str]

    def describe(self) -> str:
        return "a host spawned over stdio for this command"


Target = HttpTarget | SpawnTarget


def choose_target(request: TargetRequest) -> Target:
    """Pick the host to talk to.

    Raises:
        CliError: conflicting or malformed flags, a missing layout file, an unreadable host.json.
    """
    environment = request.environment
    home = request.home or _home_from(environment)
    url, url_origin = _given(request.url, "--url", environment.get("AIOS_URL"), "AIOS_URL")
    token, token_origin = _given(
        request.token, "--token", environment.get("AIOS_TOKEN"), "AIOS_TOKEN"
    )
    starts_host = request.spawn or request.config is not None
    if request.url is not None and starts_host:
        raise CliError(
            "--url talks to a running host, --spawn and --config start a new one: use one or the "
            "other."
        )
    if url is not None and not starts_host:
        return HttpTarget(
            url=_normalized(url, url_origin), token=token, origin=url_origin, home=home
        )
    if token is not None and not starts_host:
        raise CliError(
            f"{token_origin} needs --url (or AIOS_URL): a token belongs to one host's URL."
        )
    if not starts_host:
        discovered = _discover(home)
        if discovered is not None:
            return discovered
    return _spawn_target(request)


def _given(
    flag: str | None, flag_name: str, environment: str | None, variable: str
) -> tuple[str | None, str]:
    if flag:
        return flag, flag_name
    if environment:
        return environment, variable
    return None, ""


def _home_from(environment: Mapping[str, str]) -> Path:
    configured = environment.get("AIOS_HOME")
    return Path(configured) if configured else default_home()


def _normalized(url: str, origin: str) -> str:
    """An http(s) URL; a bare ``http://host:port`` gets the host's ``/mcp`` path."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise CliError(
            f"{origin} {url!r} is not an http(s) URL. The host serves "
            "http://127.0.0.1:PORT/mcp (its URL is in $AIOS_HOME/host.json)."
        )
    if parts.path in ("", "/"):
        parts = parts._replace(path=MCP_PATH)
    return urlunsplit(parts)


def _discover(home: Path) -> HttpTarget | None:
    """The host named by ``home/host.json`` when the process that wrote it is alive."""
    path = home / HOST_FILE_NAME
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as error:
        raise CliError(f"Cannot read {path}: {error.strerror}. Fix its permissions.") from error
    try:
        host = HostFile.model_validate(json.loads(text))
    except (json.JSONDecodeError, ValidationError) as error:
        raise CliError(
            f"{path} is not a host file (url, token, pid). Delete it, or start the host again "
            "with `aios-host --transport http`, which rewrites it."
        ) from error
    if not _alive(host.pid):
        return None
    return HttpTarget(url=host.url, token=host.token, origin=str(path), home=home)


def _alive(pid: int) -> bool:
    assert pid > 0, pid
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process: alive, and its host.json is not ours to judge
    return True


def _spawn_target(request: TargetRequest) -> SpawnTarget:
    # The flags pin stdio: a layout's [host] table or AIOS_TRANSPORT may ask for HTTP.
    args = ["-m", "aios_host", "--transport", "stdio", "--log-level", "warning"]
    if request.config is not None:
        if not request.config.is_file():
            raise CliError(f"--config {request.config}: no such file.")
        args += ["--config", str(request.config.resolve())]
    if request.home is not None:
        args += ["--home", str(request.home)]
    return SpawnTarget(
        command=sys.executable, args=tuple(args), environment=dict(request.environment)
    )
