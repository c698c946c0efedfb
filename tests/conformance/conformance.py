"""Run the official MCP conformance suite (npm @modelcontextprotocol/conformance) and read its
per-scenario results."""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.helpers import NODE_BIN, REPO, npm_tool

BASELINE = REPO / "tests" / "conformance" / "baseline.yml"

# Scenarios that need no fixture: every server we ship must pass them.
GENERIC_SCENARIOS = (
    "server-initialize",
    "server-session-lifecycle",
    "ping",
    "tools-list",
    "resources-list",
    "prompts-list",
    "server-sse-multiple-streams",
    "dns-rebinding-protection",
    "caching",
    "http-header-validation",
    "sep-2164-resource-not-found",
)


_RESULT_FOLDER = re.compile(r"^server-(?P<scenario>.+)-\d{4}-\d{2}-\d{2}T[\d-]+Z$")


def _scenario_name(folder: str) -> str:
    """``server-<scenario>-<ISO timestamp>`` -> ``<scenario>`` (a timestamp has dashes too)."""
    match = _RESULT_FOLDER.match(folder)
    assert match is not None, folder
    return match.group("scenario")


@dataclass(frozen=True)
class SuiteRun:
    exit_code: int
    passed: list[str]
    failed: list[str]
    output: str


def run_suite(
    url: str, output: Path, *, spec_version: str | None = None, scenario: str | None = None
) -> SuiteRun:
    """Run the suite (or one scenario) against ``url`` with the baseline file."""
    command = [str(npm_tool("conformance")), "server", "--url", url, "-o", str(output)]
    command += ["--expected-failures", str(BASELINE)]
    if spec_version is not None:
        command += ["--spec-version", spec_version]
    if scenario is not None:
        command += ["--scenario", scenario]
    environment = {**os.environ, "PATH": f"{NODE_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    completed = subprocess.run(
        command, capture_output=True, text=True, env=environment, timeout=600, check=False
    )
    passed, failed = read_results(output)
    return SuiteRun(completed.returncode, passed, failed, completed.stdout + completed.stderr)


def read_results(output: Path) -> tuple[list[str], list[str]]:
    """Scenario names whose checks all succeeded, and those with a failed check."""
    passed: list[str] = []
    failed: list[str] = []
    for checks_file in sorted(output.glob("*/checks.json")):
        checks = json.loads(checks_file.read_text(encoding="utf-8"))
        scenario = _scenario_name(checks_file.parent.name)
        statuses = {check["status"] for check in checks}
        (failed if "FAILURE" in statuses else passed).append(scenario)
    return passed, failed
