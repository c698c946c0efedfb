"""What the runtime can tell and what operators can change: models, residency, pulls, usage."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio

from aios_inference.backends.base import BackendModel, LoadedModel
from aios_inference.errors import reason_of
from aios_inference.models import (
    InventoryView,
    LoadedModelView,
    ModelList,
    ModelView,
    OperationResult,
    PullResult,
    UsagePage,
)
from aios_inference.residency import PIN_KEEP_ALIVE
from aios_inference.service import InferenceService
from aios_inference.store import UsageFilter
from aios_shared.errors import AiosError, InvalidArgument, NotFound

__all__ = [
    "inventory",
    "list_loaded",
    "list_models",
    "load_model",
    "pin_model",
    "pull_model",
    "query_usage",
    "unload_model",
]

OnPull = Callable[[int, int | None, str], Awaitable[None]]


async def _listings(service: InferenceService) -> tuple[dict[str, list[BackendModel]], list[str]]:
    found: dict[str, list[BackendModel]] = {}
    down: list[str] = []
    for name, backend in service.backends.items():
        try:
            found[name] = await backend.list_models()
        except AiosError:
            down.append(name)
    return found, down


async def list_models(service: InferenceService) -> ModelList:
    """The registry merged with what each reachable backend lists right now."""
    found, down = await _listings(service)
    views: list[ModelView] = []
    for entry in service.registry.values():
        names = {model.name for model in found.get(entry.backend, [])}
        views.append(_view(service, entry.name, entry.target in names, None))
    registered_targets = {(entry.backend, entry.target) for entry in service.registry.values()}
    for backend, models in found.items():
        for model in models:
            if (backend, model.name) in registered_targets:
                continue
            # Bare names reach the default backend; other backends' models are `backend/model`.
            name = model.name if backend == service.default_backend else f"{backend}/{model.name}"
            if name not in service.registry:
                views.append(_view(service, name, True, model.size_bytes))
    return ModelList(models=views, unreachable_backends=down)


def _view(service: InferenceService, name: str, available: bool, size: int | None) -> ModelView:
    entry = service.entry(name)
    registered = name in service.registry
    return ModelView(
        name=name,
        backend=entry.backend,
        backend_model=entry.target,
        registered=registered,
        context_tokens=entry.context_tokens if registered else None,
        price_prompt_per_1k=entry.price_prompt_per_1k,
        price_completion_per_1k=entry.price_completion_per_1k,
        placement=entry.placement,
        size_bytes=entry.size_bytes or size,
        concurrency_max=entry.concurrency_max,
        queue_depth_max=entry.queue_depth_max,
        fallbacks=list(entry.fallbacks),
        available=available,
    )


async def list_loaded(service: InferenceService) -> tuple[list[LoadedModelView], list[str]]:
    """Resident models on every backend, with pins and this server's load on each."""
    views: list[LoadedModelView] = []
    down: list[str] = []
    for name, backend in service.backends.items():
        try:
            loaded: list[LoadedModel] = await backend.loaded_models()
        except AiosError:
            down.append(name)
            continue
        for item in loaded:
            gates = service.gates_for(name, item.name)
            views.append(
                LoadedModelView(
                    model=item.name,
                    backend=name,
                    size_bytes=item.size_bytes,
                    vram_bytes=item.vram_bytes,
                    expires_at=item.expires_at,
                    pinned=service.residency.is_pinned(name, item.name),
                    in_flight=sum(gate.in_flight for gate in gates),
                    queued=sum(gate.queued for gate in gates),
                )
            )
    return views, down


async def inventory(service: InferenceService) -> InventoryView:
    loaded, down = await list_loaded(service)
    devices = await anyio.to_thread.run_sync(service.residency.devices)
    return InventoryView(devices=devices, loaded=loaded, unreachable_backends=down)


def _target(service: InferenceService, model: str, backend: str | None) -> tuple[str, str]:
    entry = service.entry(model)
    name = backend or entry.backend
    if name not in service.backends:
        raise NotFound(
            f"No backend named {name!r}.",
            hint=f"Configured: {', '.join(service.backends)}.",
            details={"reason": "backend_not_found"},
        )
    return name, (entry.target if backend in (None, entry.backend) else model)


async def _result(
    service: InferenceService, model: str, backend: str, action: str
) -> OperationResult:
    loaded, _ = await list_loaded(service)
    return OperationResult(model=model, backend=backend, action=action, loaded=loaded)


@asynccontextmanager
async def _audited(
    service: InferenceService, actor: str, action: str, subject: str
) -> AsyncIterator[None]:
    """Audit an operator action with its outcome (the error's reason when it fails)."""
    try:
        yield
    except AiosError as error:
        await service.store.audit(actor, action, subject, reason_of(error), {"code": error.code})
        raise
    await service.store.audit(actor, action, subject, "ok", {})


async def load_model(
    service: InferenceService, model: str, backend: str | None, keep_alive: str | None, actor: str
) -> OperationResult:
    name, target = _target(service, model, backend)
    async with _audited(service, actor, "model.load", f"{name}/{target}"):
        await service.residency.admit(name, target, service.entry(model).size_bytes)
        pinned = service.residency.is_pinned(name, target)
        await service.backends[name].load(target, PIN_KEEP_ALIVE if pinned else keep_alive)
    service.residency.touch(name, target)
    return await _result(service, target, name, "loaded")


async def unload_model(
    service: InferenceService, model: str, backend: str | None, actor: str
) -> OperationResult:
    name, target = _target(service, model, backend)
    async with _audited(service, actor, "model.unload", f"{name}/{target}"):
        await service.backends[name].unload(target)
    if service.residency.is_pinned(name, target):
        await service.residency.pin(name, target, False, actor)
    return await _result(service, target, name, "unloaded")


async def pin_model(
    service: InferenceService, model: str, backend: str | None, pinned: bool, actor: str
) -> OperationResult:
    """Pin (load with no expiry) or unpin (back to the default keep-alive); the pin itself is
    audited with the store write."""
    name, target = _target(service, model, backend)
    if pinned:
        async with _audited(service, actor, "model.load", f"{name}/{target}"):
            await service.residency.admit(name, target, service.entry(model).size_bytes)
            await service.backends[name].load(target, PIN_KEEP_ALIVE)
    else:
        await service.backends[name].load(target, None)
    await service.residency.pin(name, target, pinned, actor)
    return await _result(service, target, name, "pinned" if pinned else "unpinned")


async def pull_model(
    service: InferenceService,
    model: str,
    backend: str | None,
    insecure: bool,
    on_event: OnPull,
    actor: str,
) -> PullResult:
    name, target = _target(service, model, backend)
    events = 0
    status = ""
    async with _audited(service, actor, "model.pull", f"{name}/{target}"):
        with anyio.fail_after(service.limits.pull_timeout_s):
            async for event in service.backends[name].pull(target, insecure=insecure):
                events += 1
                status = event.status
                message = _pull_message(event.status, event.completed, event.total)
                await on_event(events, event.total, message)
    return PullResult(model=target, backend=name, status=status, events=events)


def _pull_message(status: str, completed: int | None, total: int | None) -> str:
    if completed is not None and total:
        return f"{status} {completed}/{total}"
    return status


async def query_usage(
    service: InferenceService, filters: dict[str, str | None], cursor: int | None, limit: int | None
) -> UsagePage:
    page = limit or service.limits.usage_rows_max
    if not 0 < page <= service.limits.usage_rows_max:
        raise InvalidArgument(
            f"limit must be 1 to {service.limits.usage_rows_max}, got {page}.",
            details={"reason": "invalid_limit"},
        )
    chosen = UsageFilter({key: value for key, value in filters.items() if value is not None})
    records, totals, next_cursor = await service.store.query(chosen, after=cursor or 0, limit=page)
    return UsagePage(records=records, totals=totals, next_cursor=next_cursor)
