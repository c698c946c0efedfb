"""The official MCP conformance suite against the HOST over Streamable HTTP, with our
everything-shaped fixture composed as a child under an empty prefix, so the suite exercises the
host's forwarding of tools, resources, prompts, progress, logging, completion, subscriptions,
sampling and elicitation. The fixture-free scenarios also run against each subsystem server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from aios_host.config import runnable
from tests.conformance.run_conformance import run_generic_scenarios, run_suite
from tests.helpers import (
    FIXTURE_SERVER,
    REPO,
    node_environment,
    npm_tool,
    stop,
    wait_for_file,
    write_layout,
)

pytestmark = [pytest.mark.npm, pytest.mark.slow]

HTTP_ON_FREE_PORT = ["--transport", "http", "--port", "0"]
HOST = [sys.executable, "-m", "aios_host", *HTTP_ON_FREE_PORT, "--no-auth"]
ADD_ARGS = ["--tool-arg", "a=2", "--tool-arg", "b=40"]
# Every subsystem server that exists in this build (the list grows as servers land).
SUBSYSTEM_MODULES = [
    module
    for module in ("aios_tools", "aios_inference", "aios_memory", "aios_scheduler", "aios_market")
    if runnable(module)
]


@pytest.fixture(scope="module")
def open_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The host on loopback without a bearer token (the suite cannot send headers)."""
    home = tmp_path_factory.mktemp("conformance-host")
    layout = write_layout(
        home,
        [
            {
                "name": "everything",
                "command": [sys.executable, str(FIXTURE_SERVER)],
                "transport": "http",
                "prefix": "",
            }
        ],
    )
    ready = home / "ready.json"
    log = home / "host.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [*HOST, "--config", str(layout), "--home", str(home), "--ready-file", str(ready)],
            env=node_environment(),
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=log_file,
        )
        try:
            wait_for_file(ready, process, 60, log)
            yield json.loads(ready.read_text())["url"]
        finally:
            stop(process)


@pytest.mark.parametrize("spec_version", ["2025-11-25", "2026-07-28"])
def test_the_host_passes_the_conformance_suite(
    open_host: str, spec_version: str, tmp_path: Path
) -> None:
    """Every scenario of the active suite passes through the host, except the baseline's."""
    run = run_suite(open_host, spec_version, tmp_path / spec_version)
    assert run.exit_code == 0, run.output[-4000:]
    assert run.summary.failed == (), run.output[-4000:]
    assert len(run.summary.passed) >= 20
    expected = {"tools-call-with-progress", "resources-templates-read", "prompts-get-with-args"}
    if spec_version == "2025-11-25":
        expected |= {"tools-call-sampling", "tools-call-elicitation", "resources-subscribe"}
        expected |= {"tools-call-with-logging", "completion-complete", "ping"}
    assert expected <= set(run.summary.passed), run.summary.passed


@pytest.mark.parametrize("module", SUBSYSTEM_MODULES)
def test_each_subsystem_server_passes_the_generic_scenarios(module: str, tmp_path: Path) -> None:
    ready = tmp_path / "ready.json"
    log = tmp_path / "server.log"
    environment = {**os.environ, "AIOS_HOME": str(tmp_path / "home")}
    environment.pop("AIOS_AUTH_TOKEN", None)
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", module, *HTTP_ON_FREE_PORT, "--ready-file", str(ready)],
            env=environment,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=log_file,
        )
        try:
            wait_for_file(ready, process, 60, log)
            url = json.loads(ready.read_text())["url"]
            runs = run_generic_scenarios(url, tmp_path)
        finally:
            stop(process)
    failing = {name: run.output[-1500:] for name, run in runs.items() if run.exit_code != 0}
    assert failing == {}


def test_the_inspector_cli_drives_the_host(open_host: str, tmp_path: Path) -> None:
    """The MCP Inspector's CLI mode lists and calls tools through the host."""
    inspector = str(npm_tool("inspector"))
    environment = {**node_environment(), "MCP_CATALOG_PATH": str(tmp_path / "catalog.json")}
    listed = subprocess.run(
        [inspector, "--cli", open_host, "--method", "tools/list"],
        capture_output=True, text=True, env=environment, timeout=120, check=False,
    )  # fmt: skip
    called = subprocess.run(
        [inspector, "--cli", open_host, "--method", "tools/call", "--tool-name", "add", *ADD_ARGS],
        capture_output=True, text=True, env=environment, timeout=120, check=False,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr[-2000:]
    names = {tool["name"] for tool in json.loads(listed.stdout)["tools"]}
    assert {"host_status", "add", "test_sampling"} <= names
    assert called.returncode == 0, called.stderr[-2000:]
    assert json.loads(called.stdout)["structuredContent"] == {"result": 42}
