"""``aios-scheduler``: run the scheduler server (stdio, or Streamable HTTP + SSE).

aios-scheduler                                   # stdio, data in $AIOS_HOME/scheduler.db
aios-scheduler --transport http --port 8766      # Streamable HTTP at /mcp, SSE at /sse
aios-scheduler --agent servers/scheduler/agents/echo.yaml   # also supervise a worker
"""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path
from typing import Any

import anyio

from aios_scheduler.config import SchedulerSettings
from aios_scheduler.server import build_server
from aios_scheduler.workers import ListeningUrl
from aios_shared.config import load_settings, server_argument_parser
from aios_shared.errors import AiosError
from aios_shared.runner import serve
from aios_shared.telemetry import configure_logging

EXIT_CONFIG_ERROR = 2


def parse_flags(argv: list[str] | None) -> dict[str, Any]:
    parser = server_argument_parser("aios-scheduler", __doc__.split("\n")[0])
    parser.add_argument("--database-path", type=Path, help="SQLite file")
    parser.add_argument("--tier-policy", choices=["weighted", "strict"])
    parser.add_argument("--test-mode", action="store_true", default=None)
    parser.add_argument("--crash-after-commit", help="test mode: exit 137 after this tool commits")
    parser.add_argument(
        "--agent", dest="agents", type=Path, action="append", help="agent definition to supervise"
    )
    return vars(parser.parse_args(argv))


def main(argv: list[str] | None = None) -> None:
    if sys.flags.optimize:
        sys.exit("aios-scheduler: run without -O (assertions guard invariants)")
    flags = parse_flags(argv)
    config_file = flags.pop("config")
    try:
        settings = load_settings(SchedulerSettings, config_file=config_file, flags=flags)
    except AiosError as error:
        sys.stderr.write(f"aios-scheduler: {error.for_caller()}\n")
        sys.exit(EXIT_CONFIG_ERROR)
    if settings.agents and settings.transport == "stdio":
        sys.stderr.write("aios-scheduler: --agent needs --transport http (workers connect to it)\n")
        sys.exit(EXIT_CONFIG_ERROR)
    configure_logging("scheduler", settings.log_level)
    listening = ListeningUrl()
    server = build_server(settings, listening)
    try:
        anyio.run(partial(serve, server, settings, on_listening=listening.set))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
