"""Layered, typed settings: embedded defaults < config file < ``AIOS_*`` environment < CLI flags.

Every server describes its settings as a frozen pydantic model (a subclass of ``ServerSettings``)
and builds it once in ``__main__`` with :func:`load_settings`; nothing reads ``os.environ`` later
(STYLE.md section 8). Environment names are the prefix plus the field name in upper case, with
``__`` descending into nested models: ``AIOS_LOG_LEVEL``, ``AIOS_LIMITS__QUEUE_DEPTH_MAX``.
Values are parsed as JSON when they parse (numbers, booleans, lists) and kept as text otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from aios_shared.errors import InvalidArgument

__all__ = [
    "ServerSettings",
    "default_home",
    "load_settings",
    "read_config_file",
    "server_argument_parser",
]

SettingsT = TypeVar("SettingsT", bound=BaseModel)

Transport = Literal["stdio", "http", "sse"]
LogLevel = Literal["debug", "info", "warning", "error"]


def default_home() -> Path:
    """The embedded default data directory (XDG data dir); ``AIOS_HOME`` overrides it."""
    return Path.home() / ".local" / "share" / "aios"


class ServerSettings(BaseModel):
    """Settings every AIOS server shares: where its data lives and how it is served."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    home: Path = Field(default_factory=default_home, description="Data directory.")
    log_level: LogLevel = "info"
    transport: Transport = "stdio"
    host: str = Field("127.0.0.1", description="Interface for HTTP transports.")
    port: int = Field(8765, ge=0, le=65535, description="0 picks a free port.")
    auth_token: SecretStr | None = Field(
        None, description="Bearer token required on HTTP transports; none means open (loopback)."
    )
    ready_file: Path | None = Field(
        None, description="Where to write the bound URL once the HTTP server listens."
    )
    allowed_hosts: list[str] = Field(
        default_factory=lambda: ["127.0.0.1:*", "localhost:*", "[::1]:*"],
        description="Host headers accepted on HTTP (DNS-rebinding protection).",
    )
    allowed_origins: list[str] = Field(
        default_factory=lambda: ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"],
        description="Origin headers accepted on HTTP (DNS-rebinding protection).",
    )
    request_body_bytes_max: int = Field(4 * 1024 * 1024, gt=0)
    shutdown_grace_s: float = Field(10.0, gt=0, description="In-flight work gets this on SIGTERM.")


def server_argument_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The flags every AIOS server takes (the host starts its children with them); a server
    adds its own. Unset flags stay ``None`` so they never hide the environment layer."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--config", type=Path, help="settings file (TOML or JSON)")
    parser.add_argument("--transport", choices=["stdio", "http", "sse"])
    parser.add_argument("--host", help="interface for HTTP (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port for HTTP (0 picks a free one)")
    parser.add_argument("--home", type=Path, help="data directory (default ~/.local/share/aios)")
    parser.add_argument("--ready-file", type=Path, help="write the bound URL here once listening")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    return parser


def read_config_file(path: Path) -> dict[str, Any]:
    """Parse a TOML or JSON settings file into a mapping.

    Raises:
        InvalidArgument: the file is missing, unreadable, or not a TOML/JSON object.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise InvalidArgument(
            f"Cannot read config file {path}: {error.strerror}.",
            hint="Check the path given with --config.",
        ) from error
    try:
        if path.suffix == ".json":
            parsed: object = json.loads(text)
        else:
            parsed = tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as error:
        raise InvalidArgument(
            f"Config file {path} is not valid {'JSON' if path.suffix == '.json' else 'TOML'}: "
            f"{error}.",
        ) from error
    if not isinstance(parsed, dict):
        raise InvalidArgument(f"Config file {path} must hold an object at the top level.")
    return parsed


def _parse_env_value(raw: str) -> object:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def _environment_layer(
    model: type[BaseModel], environ: Mapping[str, str], prefix: str
) -> dict[str, Any]:
    layer: dict[str, Any] = {}
    for key, raw in environ.items():
        if not key.startswith(prefix):
            continue
        path = [part.lower() for part in key[len(prefix) :].split("__")]
        if path[0] not in model.model_fields:
            continue
        cursor = layer
        for part in path[:-1]:
            cursor = cursor.setdefault(part, {})
        cursor[path[-1]] = _parse_env_value(raw)
    return layer


def _deep_merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_settings(
    model: type[SettingsT],
    *,
    config_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
    env_prefix: str = "AIOS_",
) -> SettingsT:
    """Build settings from the layers, later layers winning field by field.

    ``flags`` holds only the options the user actually gave (``None`` values are ignored), so an
    unset flag never hides an environment variable.

    Raises:
        InvalidArgument: a layer holds an unknown field or a value of the wrong type; the message
            names the field and where to fix it.
    """
    environment = dict(os.environ if environ is None else environ)
    layers: dict[str, Any] = {}
    if config_file is not None:
        layers = _deep_merge(layers, read_config_file(config_file))
    layers = _deep_merge(layers, _environment_layer(model, environment, env_prefix))
    layers = _deep_merge(layers, {k: v for k, v in (flags or {}).items() if v is not None})
    try:
        return model.model_validate(layers)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in item['loc']) or '(root)'}: {item['msg']}"
            for item in error.errors()
        )
        raise InvalidArgument(
            f"Invalid settings: {problems}.",
            hint=f"Fix the config file, the {env_prefix}* environment or the command-line flags.",
        ) from error
