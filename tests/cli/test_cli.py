"""The `aios` command, run as a real process against real hosts: one it spawns over stdio, one
the test starts over Streamable HTTP (reached by --url/--token or found through host.json).
Each host composes one child server (tests/cli/child_server.py) under the prefix `calc_`."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import REPO, START_DEADLINE_S, stop, wait_for_file

pytestmark = pytest.mark.slow

CHILD_SERVER = Path(__file__).with_name("child_server.py")
CLI_DEADLINE_S = 120.0


@dataclass(frozen=True)
class Run:
    """One finished `aios` process."""

    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


@dataclass(frozen=True)
class Host:
    """A host process serving Streamable HTTP, with the home it wrote host.json to."""

    url: str
    token: str
    pid: int
    home: Path


def clean_environment(home: Path, **extra: str) -> dict[str, str]:
    """The test's environment without any AIOS_* setting of the machine running it."""
    kept = {key: value for key, value in os.environ.items() if not key.startswith("AIOS_")}
    return {**kept, "AIOS_HOME": str(home), "COLUMNS": "200", **extra}


def write_layout(directory: Path) -> Path:
    path = directory / "layout.json"
    child = {"name": "calc", "command": [sys.executable, str(CHILD_SERVER)]}
    path.write_text(json.dumps({"servers": [child]}), encoding="utf-8")
    return path


def aios(*args: str, environment: dict[str, str]) -> Run:
    completed = subprocess.run(
        [sys.executable, "-m", "aios_cli", *args],
        capture_output=True,
        text=True,
        env=environment,
        cwd=REPO,
        timeout=CLI_DEADLINE_S,
        check=False,
    )
    return Run(completed.returncode, completed.stdout, completed.stderr)


@pytest.fixture(scope="module")
def http_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Host]:
    """A real host over HTTP on a free port; it makes its own token and writes host.json."""
    directory = tmp_path_factory.mktemp("http-host")
    home = directory / "home"
    layout = write_layout(directory)
    log = directory / "host.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "aios_host", "--transport", "http", "--port", "0"),
                *("--config", str(layout), "--home", str(home)),
            ],
            env=clean_environment(home),
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=log_file,
        )
        try:
            wait_for_file(home / "host.json", process, START_DEADLINE_S, log)
            written = json.loads((home / "host.json").read_text(encoding="utf-8"))
            yield Host(url=written["url"], token=written["token"], pid=process.pid, home=home)
        finally:
            stop(process)


@pytest.fixture(params=["spawned", "url", "host.json"])
def connect_args(
    request: pytest.FixtureRequest, tmp_path: Path
) -> tuple[list[str], dict[str, str]]:
    """The same command three ways: a host the CLI spawns with --config, the HTTP host by
    --url/--token, and the HTTP host found through its host.json."""
    empty_home = tmp_path / "empty-home"
    if request.param == "spawned":
        return ["--config", str(write_layout(tmp_path))], clean_environment(empty_home)
    host: Host = request.getfixturevalue("http_host")
    if request.param == "url":
        return ["--url", host.url, "--token", host.token], clean_environment(empty_home)
    return [], clean_environment(host.home)


def test_status_lists_the_child_as_running(
    connect_args: tuple[list[str], dict[str, str]],
) -> None:
    """`aios status` shows the host's child and its state, as a table and as JSON."""
    options, environment = connect_args
    table = aios("status", *options, environment=environment)
    machine = aios("status", "--json", *options, environment=environment)

    assert table.code == 0, table.stderr
    assert "calc" in table.stdout
    assert "running" in table.stdout
    assert machine.code == 0, machine.stderr
    [child] = machine.json()["children"]
    assert (child["name"], child["state"], child["prefix"]) == ("calc", "running", "calc_")


def test_tools_lists_the_childs_tools_under_its_prefix(
    connect_args: tuple[list[str], dict[str, str]],
) -> None:
    """`aios tools` lists everything with the first line of the description; a substring
    argument filters by name."""
    options, environment = connect_args
    everything = aios("tools", *options, environment=environment)
    filtered = aios("tools", "add", "--json", *options, environment=environment)

    assert everything.code == 0, everything.stderr
    for name in ("host_status", "calc_add", "calc_count"):
        assert name in everything.stdout
    assert "Add two integers." in everything.stdout
    assert filtered.code == 0, filtered.stderr
    assert [tool["name"] for tool in filtered.json()] == ["calc_add"]


def test_call_returns_the_tools_structured_result(
    connect_args: tuple[list[str], dict[str, str]],
) -> None:
    """`aios call` takes the arguments as a JSON object (also right after --json, which then
    prints the structured content) or as --arg pairs."""
    options, environment = connect_args
    machine = aios(
        "call", "calc_add", "--json", '{"a": 2, "b": 3}', *options, environment=environment
    )
    pairs = aios(
        "call", "calc_add", "--arg", "a=2", "--arg", "b=3", *options, environment=environment
    )

    assert machine.code == 0, machine.stderr
    assert machine.json() == {"result": 5}
    assert pairs.code == 0, pairs.stderr
    assert pairs.stdout.strip() == "5"


def test_a_bad_argument_exits_1_with_invalid_argument(
    connect_args: tuple[list[str], dict[str, str]],
) -> None:
    """A tool error result exits 1: `code: message` on stderr, the structured error on stdout
    with --json."""
    options, environment = connect_args
    run = aios(
        "call", "calc_add", "--json", '{"a": 2, "b": "x"}', *options, environment=environment
    )

    assert run.code == 1
    error = run.json()
    assert error["code"] == "invalid_argument"
    assert "calc_add" in error["message"]
    assert run.stderr.startswith("invalid_argument: ")
    assert "Traceback" not in run.stderr


def test_an_unknown_tool_exits_1_with_not_found(http_host: Host) -> None:
    """Calling a tool the host does not offer is the host's not_found error."""
    environment = clean_environment(http_host.home)
    table = aios("call", "calc_nope", environment=environment)
    machine = aios("call", "calc_nope", "--json", environment=environment)

    assert table.code == 1
    assert table.stdout == ""
    assert table.stderr.startswith("not_found: Unknown tool 'calc_nope'.")
    assert machine.code == 1
    assert machine.json()["code"] == "not_found"


def test_resources_are_listed_and_read(http_host: Host) -> None:
    """`aios resources` lists the host's and the child's resources; `aios read` prints one."""
    environment = clean_environment(http_host.home)
    listed = aios("resources", "--json", environment=environment)
    read = aios("read", "cli://greeting", environment=environment)
    missing = aios("read", "nope://missing", "--json", environment=environment)

    assert listed.code == 0, listed.stderr
    uris = [resource["uri"] for resource in listed.json()["resources"]]
    assert uris == ["aios://host/status", "cli://greeting"]
    assert (read.code, read.stdout) == (0, "hello from the CLI test child\n")
    assert missing.code == 1
    assert missing.json()["code"] == "not_found"


def test_progress_is_shown_on_stderr_at_a_terminal(http_host: Host) -> None:
    """Progress notifications of a call draw a progress line on stderr (rich treats
    FORCE_COLOR as a terminal); stdout keeps only the result."""
    environment = clean_environment(http_host.home, FORCE_COLOR="1")
    run = aios("call", "calc_count", '{"steps": 3}', environment=environment)

    assert run.code == 0, run.stderr
    assert run.stdout.strip() == "3"
    assert "calc_count: step 1/3" in run.stderr


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        pytest.param(['{"a": 2,'], "The tool arguments are not valid JSON", id="malformed"),
        pytest.param(["[2, 3]"], "must be a JSON object, not list", id="not-an-object"),
        pytest.param(["{}", "--json", "{}"], "given twice", id="twice"),
        pytest.param(["--arg", "a"], "expected KEY=VALUE", id="pair-without-equals"),
    ],
)
def test_bad_call_arguments_exit_2_before_connecting(
    tmp_path: Path, arguments: list[str], message: str
) -> None:
    """Arguments are checked before any host is reached: the --url here would be refused."""
    environment = clean_environment(tmp_path)
    run = aios(
        "call", "calc_add", *arguments, "--url", "http://127.0.0.1:9/mcp", environment=environment
    )

    assert run.code == 2
    assert message in run.stderr
    assert "Traceback" not in run.stderr
    assert run.stdout == ""


def test_a_wrong_token_exits_2_and_says_where_the_right_one_is(http_host: Host) -> None:
    """A 401 from the host is explained, not reported as a generic MCP error."""
    environment = clean_environment(http_host.home)
    run = aios("status", "--url", http_host.url, "--token", "wrong", environment=environment)

    assert run.code == 2
    assert "rejected the token" in run.stderr
    assert str(http_host.home / "host.json") in run.stderr
    assert "Traceback" not in run.stderr


def test_no_host_at_the_url_exits_2_with_how_to_start_one(tmp_path: Path) -> None:
    """Connection refused names the URL and both ways out."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/mcp"
    run = aios("status", "--url", url, environment=clean_environment(tmp_path))

    assert run.code == 2
    assert f"No AIOS host at {url}: connection refused." in run.stderr
    assert "aios-host --transport http" in run.stderr
    assert "Traceback" not in run.stderr


def test_host_json_leads_to_the_running_host(http_host: Host, tmp_path: Path) -> None:
    """Without --url the CLI uses $AIOS_HOME/host.json (or --home) when its pid is alive."""
    by_environment = aios("status", "--json", environment=clean_environment(http_host.home))
    by_flag = aios(
        "status", "--json", "--home", str(http_host.home), environment=clean_environment(tmp_path)
    )

    assert by_environment.code == 0, by_environment.stderr
    assert by_environment.json()["pid"] == http_host.pid
    assert by_flag.code == 0, by_flag.stderr
    assert by_flag.json()["pid"] == http_host.pid


def test_a_stale_host_json_is_ignored_and_a_host_spawned(tmp_path: Path) -> None:
    """host.json of a host that is gone does not stop the CLI: it spawns one over stdio (with
    the layout from AIOS_CONFIG, which the spawned host reads)."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait(10)
    home = tmp_path / "home"
    home.mkdir()
    stale = {"url": "http://127.0.0.1:9/mcp", "token": "old", "pid": gone.pid}
    (home / "host.json").write_text(json.dumps(stale), encoding="utf-8")
    environment = clean_environment(home, AIOS_CONFIG=str(write_layout(tmp_path)))

    run = aios("status", "--json", environment=environment)

    assert run.code == 0, run.stderr
    assert run.json()["pid"] != gone.pid
    assert [child["name"] for child in run.json()["children"]] == ["calc"]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        pytest.param(["--token", "t"], "--token needs --url", id="token-without-url"),
        pytest.param(
            ["--url", "http://127.0.0.1:9/mcp", "--spawn"], "use one or the other", id="url-spawn"
        ),
        pytest.param(["--url", "127.0.0.1:9"], "is not an http(s) URL", id="url-without-scheme"),
        pytest.param(["--config", "missing.toml"], "no such file", id="missing-layout"),
    ],
)
def test_conflicting_or_malformed_connection_flags_exit_2(
    tmp_path: Path, arguments: list[str], message: str
) -> None:
    run = aios("status", *arguments, environment=clean_environment(tmp_path))

    assert run.code == 2
    assert message in run.stderr
    assert "Traceback" not in run.stderr


def test_a_spawned_host_that_fails_to_start_is_explained(tmp_path: Path) -> None:
    """The spawned host's own complaint (here: an invalid layout) reaches the user."""
    layout = tmp_path / "layout.toml"
    layout.write_text("servers = 3\n", encoding="utf-8")
    run = aios("status", "--config", str(layout), environment=clean_environment(tmp_path))

    assert run.code == 2
    assert "exited before answering" in run.stderr
    assert f"Invalid host layout {layout}" in run.stderr
    assert "Traceback" not in run.stderr
