"""Our everything-shaped fixture server against the official MCP conformance suite and the MCP
Inspector CLI, as a real process on loopback (port 0, ready file), the way the host starts it.

The fixture holds every fixture the suite calls, so every scenario of both spec versions
(``--suite all``: active, pending and draft) must pass except the entries of baseline.yml, which
name gaps outside the fixture. Needs the npm tools of scripts/install-test-deps.sh; without them
these tests fail (they do not skip), saying how to install them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pytest

from tests.conformance.run_conformance import (
    SPEC_VERSIONS,
    NpmToolsMissing,
    node_environment,
    npm_tool,
    run_generic_scenarios,
    run_suite,
)
from tests.helpers import REPO, stop, wait_for_file

pytestmark = pytest.mark.npm

FIXTURE_SERVER: Final = REPO / "tests" / "conformance" / "everything_server.py"
START_DEADLINE_S: Final = 60.0
INSPECTOR_TIMEOUT_S: Final = 120.0
# Scenarios that exercise the fixture's own tools, prompts and handlers, per spec version.
FIXTURE_SCENARIOS: Final = {
    "2025-11-25": {
        "tools-call-with-logging",
        "tools-call-with-progress",
        "tools-call-sampling",
        "tools-call-elicitation",
        "elicitation-sep1034-defaults",
        "elicitation-sep1330-enums",
        "resources-subscribe",
        "logging-set-level",
        "completion-complete",
        "json-schema-2020-12",
    },
    "2026-07-28": {
        "server-stateless",
        "tools-call-with-progress",
        "json-schema-2020-12",
        "http-custom-header-server-validation",
        "input-required-result-basic-elicitation",
        "input-required-result-multiple-input-requests",
        "input-required-result-multi-round",
        "input-required-result-tampered-state",
        "input-required-result-non-tool-request",
        "input-required-result-capability-check",
    },
}


@dataclass(frozen=True)
class RunningFixture:
    url: str
    stdout: Path


def _server_environment() -> dict[str, str]:
    """No AIOS_* settings: an inherited AIOS_AUTH_TOKEN would close the server to the suite,
    which cannot send headers."""
    return {key: value for key, value in os.environ.items() if not key.startswith("AIOS_")}


@pytest.fixture(scope="module")
def npm_tools() -> None:
    """Fail (not skip) with the install hint when the npm tools are missing."""
    try:
        npm_tool("node")
        npm_tool("conformance")
        npm_tool("inspector")
    except NpmToolsMissing as missing:
        pytest.fail(str(missing))


@pytest.fixture(scope="module")
def fixture_server(npm_tools: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The fixture over Streamable HTTP on 127.0.0.1, port 0; its URL from the ready file."""
    directory = tmp_path_factory.mktemp("everything-server")
    ready = directory / "ready.json"
    log = directory / "stderr.log"
    stdout = directory / "stdout.log"
    command = [sys.executable, str(FIXTURE_SERVER), "--transport", "http"]
    command += ["--host", "127.0.0.1", "--port", "0", "--ready-file", str(ready)]
    with log.open("wb") as log_file, stdout.open("wb") as stdout_file:
        process = subprocess.Popen(
            command, env=_server_environment(), cwd=REPO, stdout=stdout_file, stderr=log_file
        )
        try:
            wait_for_file(ready, process, START_DEADLINE_S, log)
            yield json.loads(ready.read_text(encoding="utf-8"))["url"]
        finally:
            stop(process)
    # Over stdio, stdout is the protocol channel: the server must never print, on any transport.
    assert stdout.read_bytes() == b"", stdout.read_text(errors="replace")[:2000]


@pytest.mark.parametrize("spec_version", SPEC_VERSIONS)
def test_the_fixture_passes_every_scenario_of_each_spec_version(
    fixture_server: str, spec_version: str, tmp_path: Path
) -> None:
    """Every scenario of the whole suite for the version passes, or fails only as baseline.yml
    expects (exit code 0), and the fixture-specific scenarios are among the passes."""
    run = run_suite(fixture_server, spec_version, tmp_path / spec_version, suite="all")
    assert run.exit_code == 0, run.output[-4000:]
    assert run.summary.passed, run.output[-4000:]
    missing = FIXTURE_SCENARIOS[spec_version] - set(run.summary.passed)
    assert missing == set(), run.summary


def test_the_fixture_passes_the_generic_scenarios(fixture_server: str, tmp_path: Path) -> None:
    """The fixture-free scenarios (the ones every AIOS server must pass) run one by one."""
    runs = run_generic_scenarios(fixture_server, tmp_path)
    failing = {name: run.output[-1500:] for name, run in runs.items() if run.exit_code != 0}
    assert failing == {}
    assert all(run.summary.passed == (name,) for name, run in runs.items()), runs


@pytest.mark.parametrize("transport", ["http", "stdio"])
def test_the_inspector_cli_lists_the_fixture_tools(
    fixture_server: str, transport: str, tmp_path: Path
) -> None:
    """The MCP Inspector's CLI mode lists the fixture's tools over Streamable HTTP and over
    stdio (the Inspector starts the fixture itself)."""
    target = [fixture_server] if transport == "http" else [sys.executable, str(FIXTURE_SERVER)]
    environment = node_environment(_server_environment())
    environment["MCP_CATALOG_PATH"] = str(tmp_path / "catalog.json")
    listed = subprocess.run(
        [str(npm_tool("inspector")), "--cli", *target, "--method", "tools/list"],
        capture_output=True,
        text=True,
        env=environment,
        cwd=REPO,
        timeout=INSPECTOR_TIMEOUT_S,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr[-2000:]
    names = {tool["name"] for tool in json.loads(listed.stdout)["tools"]}
    assert {"add", "slow_count", "wait_for_cancel", "crash", "pid"} <= names
