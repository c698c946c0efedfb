"""What the CLI reads from the host, validated at the edge (STYLE.md section 3).

The CLI does not import the host package; these are its own views of the host's answers.
Unknown fields are ignored so a newer host still works with an older CLI.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ChildView", "HostFile", "HostStatusView"]


class ChildView(BaseModel):
    """One child server as ``host_status`` reports it."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    name: str
    state: str
    transport: str
    pid: int | None = None
    url: str | None = None
    prefix: str = ""
    restarts_in_period: int = Field(0, ge=0)
    restarts_total: int = Field(0, ge=0)
    tools: int = Field(0, ge=0)
    detail: str | None = None
    server_info: str | None = None


class HostStatusView(BaseModel):
    """The structured content of ``host_status``."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    name: str
    pid: int
    uptime_s: float = Field(ge=0)
    tools: int = Field(ge=0)
    children: list[ChildView] = Field(default_factory=list)


class HostFile(BaseModel):
    """``$AIOS_HOME/host.json``: where a host serving HTTP can be reached."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    url: str = Field(min_length=1)
    token: str = Field(min_length=1)
    pid: int = Field(gt=0)
