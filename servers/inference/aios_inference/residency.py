"""Which models are resident where: inventory, admission of loads, pins, idle eviction.

Memory figures come from the backend's own loaded-model list (Ollama ``/api/ps``: ``size`` and
``size_vram``) and, when a GPU is local and ``nvidia-ml-py`` is installed, from NVML. A backend's
capacity is its configured ``memory_bytes``, else the local GPUs' total for a loopback backend,
else unknown (then every load is admitted and the backend decides). A load that does not fit
first evicts idle, unpinned models in least-recently-used order, then is refused
(``does_not_fit``). Pins are kept in the ledger database and re-applied as ``keep_alive=-1``.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlparse

import anyio

from aios_inference.backends.base import Backend, LoadedModel
from aios_inference.config import BackendConfig
from aios_inference.models import DeviceView
from aios_inference.store import UsageStore
from aios_shared.errors import AiosError, ResourceExhausted

__all__ = ["PIN_KEEP_ALIVE", "GpuDevice", "Residency", "read_gpus"]

logger = logging.getLogger(__name__)

PIN_KEEP_ALIVE: Final = -1
_LOOPBACK: Final = frozenset({"127.0.0.1", "localhost", "::1"})


@dataclass(frozen=True)
class GpuDevice:
    name: str
    memory_total_bytes: int
    memory_used_bytes: int
    utilization_percent: float


def read_gpus() -> list[GpuDevice]:
    """Local NVIDIA GPUs through NVML; empty without the library, the driver or a GPU."""
    try:
        nvml: Any = importlib.import_module("pynvml")
    except ImportError:
        return []
    try:
        nvml.nvmlInit()
    except nvml.NVMLError:
        return []
    try:
        devices = []
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            name = nvml.nvmlDeviceGetName(handle)
            devices.append(
                GpuDevice(
                    name=name.decode() if isinstance(name, bytes) else str(name),
                    memory_total_bytes=int(memory.total),
                    memory_used_bytes=int(memory.used),
                    utilization_percent=float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu),
                )
            )
        return devices
    finally:
        nvml.nvmlShutdown()


class Residency:
    """Loads, unloads, pins and evictions across the backends."""

    def __init__(
        self,
        backends: dict[str, Backend],
        configs: dict[str, BackendConfig],
        store: UsageStore,
        in_flight: Callable[[str, str], int],
    ) -> None:
        self._backends = backends
        self._configs = configs
        self._store = store
        self._in_flight = in_flight
        self.pins: set[tuple[str, str]] = set()
        self._last_used: dict[tuple[str, str], float] = {}
        self._gpus = read_gpus()
        self._lock = anyio.Lock()

    async def start(self) -> None:
        self.pins = await self._store.pins()

    def touch(self, backend: str, model: str) -> None:
        self._last_used[(backend, model)] = time.monotonic()

    def is_pinned(self, backend: str, model: str) -> bool:
        return (backend, model) in self.pins

    def capacity_bytes(self, backend: str) -> int | None:
        config = self._configs[backend]
        if config.memory_bytes is not None:
            return config.memory_bytes
        if self._gpus and urlparse(config.url).hostname in _LOOPBACK:
            return sum(gpu.memory_total_bytes for gpu in self._gpus)
        return None

    def devices(self) -> list[DeviceView]:
        views = [
            DeviceView(
                name=gpu.name,
                kind="gpu",
                memory_total_bytes=gpu.memory_total_bytes,
                memory_used_bytes=gpu.memory_used_bytes,
                utilization_percent=gpu.utilization_percent,
                source="nvml",
            )
            for gpu in read_gpus()
        ]
        return views

    async def admit(self, backend_name: str, model: str, size_bytes: int | None) -> None:
        """Make room for ``model`` on the backend, or refuse.

        Raises:
            ResourceExhausted: it does not fit even after evicting idle models (does_not_fit).
        """
        capacity = self.capacity_bytes(backend_name)
        if capacity is None:
            return
        backend = self._backends[backend_name]
        async with self._lock:
            loaded = await backend.loaded_models()
            if any(item.name == model for item in loaded):
                return
            needed = size_bytes or 0
            used = sum(item.size_bytes for item in loaded)
            victims = self._eviction_order(backend_name, loaded)
            held = used - sum(victim.size_bytes for victim in victims)
            if held + needed > capacity:
                # Refused before anything is evicted: a refusal changes nothing.
                raise ResourceExhausted(
                    f"Model {model!r} ({needed} bytes) does not fit on {backend_name!r}: "
                    f"{held} of {capacity} bytes are held by pinned or busy models.",
                    hint="Unpin or unload a model, or use another backend.",
                    details={
                        "reason": "does_not_fit",
                        "model": model,
                        "backend": backend_name,
                        "needed_bytes": needed,
                        "held_bytes": held,
                        "capacity_bytes": capacity,
                    },
                )
            for victim in victims:
                if used + needed <= capacity:
                    break
                logger.info("model.evicted", extra={"model": victim.name, "backend": backend_name})
                await backend.unload(victim.name)
                used -= victim.size_bytes

    def _eviction_order(self, backend: str, loaded: list[LoadedModel]) -> list[LoadedModel]:
        idle = [
            item
            for item in loaded
            if not self.is_pinned(backend, item.name) and self._in_flight(backend, item.name) == 0
        ]
        return sorted(idle, key=lambda item: self._last_used.get((backend, item.name), 0.0))

    async def pin(self, backend: str, model: str, pinned: bool, actor: str) -> None:
        await self._store.set_pin(backend, model, pinned, actor)
        if pinned:
            self.pins.add((backend, model))
        else:
            self.pins.discard((backend, model))

    async def evict_idle(self, idle_s: float) -> list[str]:
        """Unload unpinned models nobody used for ``idle_s`` (Ollama backends only)."""
        evicted: list[str] = []
        now = time.monotonic()
        for name, backend in self._backends.items():
            if backend.kind != "ollama":
                continue
            try:
                loaded = await backend.loaded_models()
            except AiosError:
                continue
            for item in loaded:
                key = (name, item.name)
                last = self._last_used.setdefault(key, now)
                if key in self.pins or self._in_flight(name, item.name) or now - last < idle_s:
                    continue
                await backend.unload(item.name)
                evicted.append(f"{name}/{item.name}")
        return evicted
