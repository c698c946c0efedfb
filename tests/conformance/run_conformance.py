"""Run the official MCP conformance suite (npm ``@modelcontextprotocol/conformance``, installed
into ``.tools/node`` by ``scripts/install-test-deps.sh``) against a Streamable HTTP server and
read its per-scenario results.

Plain functions, no pytest: tests, benchmarks and ad-hoc scripts share them.

    run = run_suite("http://127.0.0.1:3001/mcp", "2026-07-28", Path("conformance-results"))
    run.exit_code, run.summary.passed, run.summary.failed

The suite runs on the npm-installed Node 22 (``PATH`` starts with ``.tools/node/node_modules/
.bin``; the machines' Node 20 cannot load it) and always with ``baseline.yml`` as its
expected-failures file, so exit code 0 means "every failure is an expected one" and a baseline
entry that passes fails the run.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

__all__ = [
    "BASELINE",
    "GENERIC_SCENARIOS",
    "NODE_BIN",
    "SPEC_VERSIONS",
    "NpmToolsMissing",
    "Suite",
    "SuiteRun",
    "Summary",
    "node_environment",
    "npm_tool",
    "read_summary",
    "run_generic_scenarios",
    "run_suite",
]

REPO: Final = Path(__file__).resolve().parents[2]
NODE_BIN: Final = REPO / ".tools" / "node" / "node_modules" / ".bin"
BASELINE: Final = REPO / "tests" / "conformance" / "baseline.yml"
SPEC_VERSIONS: Final = ("2025-11-25", "2026-07-28")
# Scenarios that need no fixture: the host and every subsystem server must pass them.
GENERIC_SCENARIOS: Final = (
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
SUITE_TIMEOUT_S: Final = 600.0
SCENARIO_TIMEOUT_S: Final = 120.0
# `-o DIR` writes DIR/server-<scenario>-<ISO timestamp>/checks.json per scenario.
_RESULT_DIRECTORY: Final = re.compile(r"^server-(?P<scenario>.+)-\d{4}-\d{2}-\d{2}T[\d-]+Z$")

Suite = Literal["active", "all", "pending", "draft"]


class NpmToolsMissing(RuntimeError):
    """An npm-installed tool is not there; the message says how to install it."""


@dataclass(frozen=True)
class Summary:
    """Scenario names by outcome, read from the ``checks.json`` files of one run.

    ``failed`` holds scenarios with a FAILURE check. ``warnings`` names each WARNING check as
    ``<scenario>:<check-id>``: the suite's summary counts those scenarios as passed, but its
    baseline comparison counts them as failures."""

    passed: tuple[str, ...]
    failed: tuple[str, ...]
    warnings: tuple[str, ...]


@dataclass(frozen=True)
class SuiteRun:
    exit_code: int
    summary: Summary
    output: str
    """The suite's stdout and stderr, for assertion messages."""


def npm_tool(name: str) -> Path:
    """The path of a binary that ``scripts/install-test-deps.sh`` installs.

    Raises:
        NpmToolsMissing: the binary is not installed.
    """
    path = NODE_BIN / name
    if not path.exists():
        raise NpmToolsMissing(
            f"{path} is missing: run scripts/install-test-deps.sh (make test-deps does) to "
            "install Node 22, the MCP conformance suite and the MCP Inspector into .tools/node."
        )
    return path


def node_environment(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) with the npm Node 22 first on PATH."""
    environment = dict(os.environ if base is None else base)
    environment["PATH"] = f"{NODE_BIN}{os.pathsep}{environment.get('PATH', '')}"
    return environment


def run_suite(
    url: str,
    spec_version: str,
    output_dir: Path,
    *,
    suite: Suite = "active",
    baseline: Path = BASELINE,
    timeout_s: float = SUITE_TIMEOUT_S,
) -> SuiteRun:
    """Run every scenario of ``suite`` that applies to ``spec_version`` against ``url``.

    Raises:
        NpmToolsMissing: the suite is not installed.
        subprocess.TimeoutExpired: the run took longer than ``timeout_s``.
    """
    arguments = ["--spec-version", spec_version, "--suite", suite]
    return _run(url, output_dir, arguments, baseline, timeout_s)


def run_generic_scenarios(
    url: str,
    output_dir: Path,
    *,
    scenarios: Iterable[str] = GENERIC_SCENARIOS,
    spec_version: str | None = None,
    baseline: Path = BASELINE,
    timeout_s: float = SCENARIO_TIMEOUT_S,
) -> dict[str, SuiteRun]:
    """Run each fixture-free scenario on its own (``--scenario``), results under
    ``output_dir/<scenario>``. Without ``spec_version`` each scenario runs at its own version;
    with one, a scenario that does not apply to it is skipped (exit code 0, empty summary).

    Raises:
        NpmToolsMissing: the suite is not installed.
        subprocess.TimeoutExpired: a scenario took longer than ``timeout_s``.
    """
    runs: dict[str, SuiteRun] = {}
    for scenario in scenarios:
        arguments = ["--scenario", scenario]
        if spec_version is not None:
            arguments += ["--spec-version", spec_version]
        runs[scenario] = _run(url, output_dir / scenario, arguments, baseline, timeout_s)
    return runs


def _run(
    url: str, output_dir: Path, arguments: Sequence[str], baseline: Path, timeout_s: float
) -> SuiteRun:
    assert timeout_s > 0, timeout_s
    assert baseline.is_file(), baseline
    output_dir.mkdir(parents=True, exist_ok=True)
    command = [str(npm_tool("conformance")), "server", "--url", url, *arguments]
    command += ["--expected-failures", str(baseline), "-o", str(output_dir)]
    completed = subprocess.run(
        command,
        capture_output=True,
        text=True,
        env=node_environment(),
        cwd=REPO,
        timeout=timeout_s,
        check=False,
    )
    output = completed.stdout + completed.stderr
    return SuiteRun(completed.returncode, read_summary(output_dir), output)


def read_summary(output_dir: Path) -> Summary:
    """Classify every scenario that wrote ``checks.json`` under ``output_dir``."""
    passed: set[str] = set()
    failed: set[str] = set()
    warnings: set[str] = set()
    for checks_file in sorted(output_dir.glob("*/checks.json")):
        match = _RESULT_DIRECTORY.match(checks_file.parent.name)
        if match is None:
            continue
        scenario = match["scenario"]
        checks = json.loads(checks_file.read_text(encoding="utf-8"))
        statuses = {check["status"] for check in checks}
        (failed if "FAILURE" in statuses else passed).add(scenario)
        warnings |= {
            f"{scenario}:{check['id']}" for check in checks if check["status"] == "WARNING"
        }
    # A scenario run twice into one directory counts as failed if either run failed.
    return Summary(tuple(sorted(passed - failed)), tuple(sorted(failed)), tuple(sorted(warnings)))
