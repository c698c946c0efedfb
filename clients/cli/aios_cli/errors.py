"""The CLI's own failures and its exit codes.

    0  the command worked
    1  the host answered with an error (a tool's ``is_error`` result, a failed read)
    2  usage or connection: bad flags or JSON, no host, a rejected token, a host that died

``CliError`` carries exit code 2 and a message that says what to do next; the host's own errors
are not exceptions here but ``ErrorPayload`` values (``aios_shared.errors``), shown and mapped
to exit code 1 by the renderer.
"""

from __future__ import annotations

from typing import Final

__all__ = ["EXIT_HOST_ERROR", "EXIT_OK", "EXIT_USAGE", "CliError", "find_cli_error", "leaves"]

EXIT_OK: Final = 0
EXIT_HOST_ERROR: Final = 1
EXIT_USAGE: Final = 2


class CliError(Exception):
    """A usage or connection failure: shown as one sentence (no traceback), exit code 2."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def leaves(error: BaseException) -> list[BaseException]:
    """The exceptions inside ``error``: task groups wrap what the MCP client raises in
    (nested) exception groups on the way out."""
    if not isinstance(error, BaseExceptionGroup):
        return [error]
    found: list[BaseException] = []
    for inner in error.exceptions:
        found.extend(leaves(inner))
    return found


def find_cli_error(error: BaseException) -> CliError | None:
    """The first ``CliError`` inside ``error``, if any."""
    return next((leaf for leaf in leaves(error) if isinstance(leaf, CliError)), None)
