"""``aios-inference``: the model runtime as an MCP server.

aios-inference                                   # stdio; Ollama on 127.0.0.1:11434
AIOS_OLLAMA_URL=http://gpu-box:11434 aios-inference --transport http --port 8766
aios-inference --config inference.toml           # [[backends]] and [[models]] tables
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import anyio

from aios_inference.config import InferenceSettings
from aios_inference.server import build_server
from aios_shared.config import load_settings, server_argument_parser
from aios_shared.errors import AiosError
from aios_shared.runner import serve
from aios_shared.telemetry import configure_logging

EXIT_CONFIG_ERROR = 2


def parse_flags(argv: list[str] | None) -> dict[str, Any]:
    parser = server_argument_parser("aios-inference", __doc__.split("\n")[0])
    return vars(parser.parse_args(argv))


def build_settings(flags: dict[str, Any]) -> InferenceSettings:
    config_file: Path | None = flags.pop("config", None) or (
        Path(os.environ["AIOS_CONFIG"]) if os.environ.get("AIOS_CONFIG") else None
    )
    return load_settings(InferenceSettings, config_file=config_file, flags=flags)


def main(argv: list[str] | None = None) -> None:
    if sys.flags.optimize:
        sys.exit("aios-inference: run without -O (assertions guard invariants)")
    try:
        settings = build_settings(parse_flags(argv))
    except AiosError as error:
        sys.stderr.write(f"aios-inference: {error.for_caller()}\n")
        sys.exit(EXIT_CONFIG_ERROR)
    configure_logging("inference", settings.log_level)
    try:
        anyio.run(serve, build_server(settings), settings)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
