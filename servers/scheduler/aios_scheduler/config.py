"""Settings of the scheduler server: constants of spec/scheduler.md section 3.7 and every bound."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from aios_shared.config import ServerSettings

__all__ = ["SchedulerLimits", "SchedulerSettings", "TierPolicy"]

TierPolicy = Literal["weighted", "strict"]


class SchedulerLimits(BaseModel):
    """Every bound the scheduler enforces, by name."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    queue_depth_max: int = Field(100_000, gt=0, description="Pending jobs; more is refused.")
    step_result_bytes_max: int = Field(1024 * 1024, gt=0)
    event_data_bytes_max: int = Field(256 * 1024, gt=0)
    checkpoint_bytes_max: int = Field(1024 * 1024, gt=0)
    input_bytes_max: int = Field(1024 * 1024, gt=0)
    dag_tasks_max: int = Field(1_000, gt=0)
    list_limit_max: int = Field(500, gt=0)
    read_events_limit_max: int = Field(1_000, gt=0)
    dispatch_wait_s_max: float = Field(30.0, gt=0)
    wait_job_s_max: float = Field(300.0, gt=0)
    feedback_items_max: int = Field(100, gt=0)
    lease_ttl_s: float = Field(30.0, gt=0)
    sweep_period_s: float = Field(1.0, gt=0)
    backoff_max_s: float = Field(60.0, gt=0)
    root_restarts_max: int = Field(10, ge=0)
    root_period_s: float = Field(60.0, gt=0)


class SchedulerSettings(ServerSettings):
    """``AIOS_TIER_POLICY``, ``AIOS_BETA``, ``AIOS_TEST_MODE``... override the defaults."""

    database_path: Path | None = Field(None, description="SQLite file; default $home/scheduler.db.")
    synchronous: Literal["NORMAL", "FULL"] = "FULL"
    tier_policy: TierPolicy = "weighted"
    beta: float = Field(0.0, ge=0.0, le=10.0, description="Reputation coupling of the weight.")
    test_mode: bool = Field(False, description="Frozen clock, test_advance_clock, fault hooks.")
    crash_after_commit: str | None = Field(
        None, description="Test mode only: _exit(137) after this tool's commit, before replying."
    )
    agents: list[Path] = Field(
        default_factory=list, description="Agent definition files whose workers are supervised."
    )
    limits: SchedulerLimits = Field(default_factory=SchedulerLimits)

    def resolved_database_path(self) -> Path:
        return self.database_path or self.home / "scheduler.db"
