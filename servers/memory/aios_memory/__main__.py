"""``python -m aios_memory``: parse flags, build settings, configure logging, serve."""

from __future__ import annotations

import argparse
import os
import sys

import anyio

from aios_memory.config import MemorySettings
from aios_memory.server import build_server
from aios_shared.config import load_settings, server_argument_parser
from aios_shared.errors import AiosError
from aios_shared.peers import peers_from_environment
from aios_shared.runner import serve
from aios_shared.telemetry import configure_logging


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = server_argument_parser("aios-memory", __doc__ or "")
    parser.add_argument("--backend", choices=["sqlite", "neo4j"])
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    if sys.flags.optimize:
        sys.exit("aios-memory: run without -O (it strips the assertions that guard the data).")
    arguments = _arguments(argv)
    flags = {
        "transport": arguments.transport,
        "host": arguments.host,
        "port": arguments.port,
        "ready_file": arguments.ready_file,
        "home": arguments.home,
        "log_level": arguments.log_level,
        "backend": arguments.backend,
    }
    try:
        settings = load_settings(MemorySettings, config_file=arguments.config, flags=flags)
    except AiosError as error:
        sys.exit(f"aios-memory: {error.for_caller()}")
    configure_logging("aios-memory", settings.log_level)
    try:
        peers = peers_from_environment(os.environ)
    except AiosError as error:
        sys.exit(f"aios-memory: {error.for_caller()}")
    anyio.run(serve, build_server(settings, peers=peers), settings)


if __name__ == "__main__":
    main()
