"""The inference server under the real host: one setting (AIOS_OLLAMA_URL) and the models,
residency and per-agent usage are visible through the host's namespaced tools (issue 6)."""

from __future__ import annotations

from pathlib import Path

import pytest
from mcp import Client

from tests.helpers import host_stdio_parameters, write_layout
from tests.inference.conftest import MODEL, Backend
from tests.inference.test_server import structured

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


async def test_a_user_sees_models_residency_and_agent_usage_through_the_host(
    tmp_path: Path, ollama: Backend
) -> None:
    """Pointed at an Ollama by AIOS_OLLAMA_URL alone, the host's inference_* tools list its
    models, show them resident after a chat, and report that chat under the agent."""
    layout = write_layout(
        tmp_path,
        [
            {
                "name": "inference",
                "module": "aios_inference",
                "transport": "http",
                # The host passes its children no data directory (yet): give this one its own.
                "env": {"AIOS_OLLAMA_URL": ollama.url, "AIOS_HOME": str(tmp_path / "inference")},
            }
        ],
    )
    parameters = host_stdio_parameters(layout, tmp_path / "home")
    async with Client(parameters, mode="legacy") as client:
        models = structured(await client.call_tool("inference_list_models", {}))
        chat = await client.call_tool(
            "inference_chat",
            {
                "model": MODEL,
                "messages": [{"role": "user", "content": "Hi"}],
                "options": {"max_tokens": 3},
                "agent_id": "agent-h",
            },
        )
        loaded = structured(await client.call_tool("inference_loaded_models", {}))
        usage = structured(await client.call_tool("inference_usage", {"agent_id": "agent-h"}))
    assert MODEL in [model["name"] for model in models["models"]]
    assert structured(chat)["usage"]["completion_tokens"] == 3
    assert MODEL in [row["model"] for row in loaded["result"]]
    assert usage["totals"]["calls"] == 1
    assert usage["records"][0]["request_id"] == structured(chat)["request_id"]
