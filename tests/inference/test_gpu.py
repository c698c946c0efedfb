"""GPU-only checks: run where a local NVIDIA GPU and nvidia-ml-py are present, skipped elsewhere."""

from __future__ import annotations

from pathlib import Path

import pytest
from mcp import Client

from aios_inference.residency import read_gpus
from aios_inference.server import build_server
from tests.inference.conftest import Backend, make_settings
from tests.inference.test_server import structured

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.gpu,
    pytest.mark.skipif(not read_gpus(), reason="no local NVIDIA GPU (NVML) on this machine"),
]


async def test_the_inventory_lists_each_local_gpu_with_its_memory(
    tmp_path: Path, ollama: Backend
) -> None:
    """Inventory from NVML: every local GPU with total and used memory."""
    async with Client(build_server(make_settings(tmp_path, ollama.url, None))) as client:
        inventory = structured(await client.call_tool("inventory", {}))
    gpus = [device for device in inventory["devices"] if device["kind"] == "gpu"]
    assert len(gpus) == len(read_gpus())
    assert all(device["memory_total_bytes"] > 0 for device in gpus)
    assert {device["source"] for device in gpus} == {"nvml"}
