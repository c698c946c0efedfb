"""What the host composes: its own settings and the list of child servers.

A layout file (TOML or JSON) lists children under ``servers``::

    [[servers]]
    name = "files"
    command = ["npx", "@modelcontextprotocol/server-filesystem", "/srv/data"]   # stdio

    [[servers]]
    name = "memory"
    module = "aios_memory"          # our own server: loopback Streamable HTTP, per-boot token
    depends_on = ["tools"]
    prefix = "memory_"              # the default is "<name>_"; "" keeps names as they are
    restart = "permanent"           # permanent | transient | temporary

Without a file the host uses the built-in AIOS layout: the subsystem servers that are installed.
"""

from __future__ import annotations

import graphlib
import importlib.util
import re
from pathlib import Path
from typing import Annotated, Final, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from aios_shared.config import ServerSettings, read_config_file
from aios_shared.errors import InvalidArgument

__all__ = [
    "AIOS_SERVERS",
    "ChildSpec",
    "HostLayout",
    "HostSettings",
    "builtin_layout",
    "load_layout",
    "runnable",
]

ChildName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,31}$")]
RestartPolicy = Literal["permanent", "transient", "temporary"]

# The subsystem servers in start order (DESIGN.md section 3) with their peer dependencies.
AIOS_SERVERS: Final[tuple[tuple[str, tuple[str, ...]], ...]] = (
    ("tools", ()),
    ("inference", ()),
    ("memory", ("tools", "inference")),
    ("scheduler", ("memory", "tools", "inference")),
    ("market", ("scheduler", "tools", "memory")),
)

_PREFIX_PATTERN: Final = re.compile(r"^[a-zA-Z0-9_-]{0,32}$")


class ChildSpec(BaseModel):
    """One child server: how to start it, what it needs, how to supervise it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: ChildName = Field(description="Unique; lower case, digits and '-' (no '_').")
    command: list[str] | None = Field(None, min_length=1, description="argv of the server.")
    module: str | None = Field(
        None, description="A Python module run with this interpreter (our own servers)."
    )
    transport: Literal["stdio", "http"] = Field(
        "stdio",
        description="stdio: JSON-RPC over the child's pipes. http: the host appends "
        "--transport http --host 127.0.0.1 --port 0 --ready-file F and a per-boot bearer "
        "token in AIOS_AUTH_TOKEN, then talks Streamable HTTP on loopback.",
    )
    env: dict[str, str] = Field(default_factory=dict)
    cwd: Path | None = None
    depends_on: list[str] = Field(default_factory=list)
    prefix: str | None = Field(None, description="Namespace prefix; default '<name>_'.")
    restart: RestartPolicy = "permanent"
    max_restarts: int = Field(5, ge=0, le=1000, description="Restarts allowed per period.")
    restart_period_s: float = Field(60.0, gt=0)
    backoff_initial_s: float = Field(0.1, ge=0)
    backoff_max_s: float = Field(5.0, ge=0)
    start_timeout_s: float = Field(30.0, gt=0)
    call_timeout_s: float = Field(300.0, gt=0, description="Longest a forwarded call may run.")

    @model_validator(mode="after")
    def _one_way_to_start(self) -> Self:
        if self.name == "host":
            raise ValueError("the server name 'host' is reserved for the host itself")
        if (self.command is None) == (self.module is None):
            raise ValueError(f"server {self.name!r}: give exactly one of 'command' or 'module'")
        if self.prefix is not None and not _PREFIX_PATTERN.fullmatch(self.prefix):
            raise ValueError(
                f"server {self.name!r}: prefix {self.prefix!r} may hold only letters, digits, "
                "'_' and '-' (at most 32)"
            )
        return self

    @property
    def namespace(self) -> str:
        return f"{self.name}_" if self.prefix is None else self.prefix


class HostLayout(BaseModel):
    """The children of one host, validated as a whole: unique names, known dependencies and no
    dependency cycle."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    servers: list[ChildSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _dependencies_form_a_dag(self) -> Self:
        names = [spec.name for spec in self.servers]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"server names must be unique; repeated: {', '.join(duplicates)}")
        for spec in self.servers:
            unknown = [dep for dep in spec.depends_on if dep not in names]
            if unknown:
                raise ValueError(
                    f"server {spec.name!r} depends on unknown server(s) {', '.join(unknown)}; "
                    f"known: {', '.join(names) or 'none'}"
                )
        self.start_order()
        return self

    def start_order(self) -> list[ChildSpec]:
        """Children in an order where each starts after everything it depends on.

        Raises:
            ValueError: the dependencies form a cycle (the message walks it).
        """
        graph = {spec.name: set(spec.depends_on) for spec in self.servers}
        sorter = graphlib.TopologicalSorter(graph)
        try:
            order = list(sorter.static_order())
        except graphlib.CycleError as error:
            cycle = " -> ".join(error.args[1])
            raise ValueError(f"dependency cycle between servers: {cycle}") from error
        by_name = {spec.name: spec for spec in self.servers}
        return [by_name[name] for name in order]


class HostSettings(ServerSettings):
    """The host's own settings (flags, ``AIOS_*`` environment, or the ``[host]`` table)."""

    name: str = "aios"
    config: Path | None = Field(None, description="Layout file (TOML or JSON).")
    arguments_bytes_max: int = Field(
        1024 * 1024, gt=0, description="Largest tool-call arguments the host forwards."
    )
    list_pages_max: int = Field(100, gt=0, description="Pages read from a child's list.")
    state_file: bool = Field(
        True, description="Write $AIOS_HOME/host.json (URL, token) on HTTP for the CLI."
    )
    require_auth: bool = Field(
        True,
        description="Bearer token on HTTP. May be turned off only on a loopback interface "
        "(for tools that cannot send headers, such as the conformance suite).",
    )

    @model_validator(mode="after")
    def _auth_off_only_on_loopback(self) -> Self:
        if not self.require_auth and self.host not in ("127.0.0.1", "::1", "localhost"):
            raise ValueError(
                f"require_auth=false is allowed only on loopback, not on host {self.host!r}"
            )
        return self


def runnable(module: str) -> bool:
    """True when ``python -m <module>`` would start a server."""
    return importlib.util.find_spec(module) is not None and (
        importlib.util.find_spec(f"{module}.__main__") is not None
    )


def load_layout(path: Path) -> HostLayout:
    """Read and validate a layout file.

    Raises:
        InvalidArgument: unreadable file, unknown fields, missing command, duplicate names,
            unknown dependencies or a dependency cycle; the message names the culprit.
    """
    document = read_config_file(path)
    document.pop("host", None)
    try:
        return HostLayout.model_validate(document)
    except ValidationError as error:
        problems = "; ".join(_describe(item) for item in error.errors())
        raise InvalidArgument(
            f"Invalid host layout {path}: {problems}.",
            hint="Each [[servers]] entry needs a name and a command or module.",
        ) from error


def _describe(item: object) -> str:
    assert isinstance(item, dict), item
    location = ".".join(str(part) for part in item.get("loc", ()))
    message = str(item.get("msg", "invalid")).removeprefix("Value error, ")
    return f"{location}: {message}" if location else message


def builtin_layout() -> HostLayout:
    """The AIOS subsystem servers that are installed and runnable (``python -m aios_<name>``)
    in this environment, each on loopback Streamable HTTP, with their peer dependencies (only
    among those present). A package still being built, without an entry point, is left out."""
    installed = [(name, deps) for name, deps in AIOS_SERVERS if runnable(f"aios_{name}")]
    present = {name for name, _ in installed}
    return HostLayout(
        servers=[
            ChildSpec(
                name=name,
                module=f"aios_{name}",
                transport="http",
                depends_on=[dep for dep in deps if dep in present],
            )
            for name, deps in installed
        ]
    )
