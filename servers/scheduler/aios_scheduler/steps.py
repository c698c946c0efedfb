"""What each step kind of an agent pipeline does; peers are reached only through
``aios_shared.peers`` and fail with ``subsystem_unavailable`` when not configured."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

import anyio

from aios_scheduler.definitions import StepDefinition
from aios_shared.peers import PeerPool

__all__ = ["PEER_OF", "run_step"]

# Which peer server each peer step kind calls, and its default tool.
PEER_OF: Final[dict[str, tuple[str, str]]] = {
    "tool": ("tools", "invoke"),
    "llm": ("inference", "generate"),
    "memory_write": ("memory", "save"),
    "memory_read": ("memory", "get"),
}


def _render(value: Any, job_input: Any, results: Mapping[str, Any]) -> Any:
    """Fill ``{input}`` and ``{steps.<id>}`` in strings, recursively."""
    if isinstance(value, str):
        rendered = value.replace("{input}", _text(job_input))
        for step_id, result in results.items():
            rendered = rendered.replace("{steps." + step_id + "}", _text(result))
        return rendered
    if isinstance(value, dict):
        return {key: _render(item, job_input, results) for key, item in value.items()}
    if isinstance(value, list):
        return [_render(item, job_input, results) for item in value]
    return value


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


async def run_step(
    step: StepDefinition,
    job_input: Any,
    results: Mapping[str, Any],
    peers: PeerPool,
    idempotency_key: str,
) -> Any:
    """Execute one step and return its JSON result.

    Raises:
        SubsystemUnavailable: a peer step whose server is not configured or down.
        AiosError: the peer's own typed error.
    """
    if step.kind == "echo":
        return job_input if step.value is None else _render(step.value, job_input, results)
    if step.kind == "transform":
        source = job_input if step.source in (None, "input") else results.get(step.source or "")
        text = _text(source)
        if step.op == "upper":
            return text.upper()
        if step.op == "lower":
            return text.lower()
        return _render(step.template or "{input}", job_input, results)
    if step.kind == "sleep":
        await anyio.sleep(step.seconds)
        return {"slept_s": step.seconds}
    peer, default_tool = PEER_OF[step.kind]
    arguments = _render(step.arguments, job_input, results)
    return await peers.call(
        peer, step.tool or default_tool, arguments, idempotency_key=idempotency_key
    )
