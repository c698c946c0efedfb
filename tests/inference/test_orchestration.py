"""Orchestration against real backends: the bounded priority queue, backpressure, overload
mapping, fallback (on 503 and on a backend killed mid-stream), admission and cancellation."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from aios_inference.config import BackendConfig, ModelConfig
from aios_inference.models import ChatMessage
from aios_inference.server import build_server
from aios_inference.service import Caller, InferenceService, Request
from aios_inference.store import UsageFilter
from aios_shared.errors import AiosError
from tests.helpers import poll_until
from tests.inference.conftest import (
    GEMMA,
    MODEL,
    SECOND_MODEL,
    Backend,
    http_json,
    kill_group,
    make_settings,
    ollama_server,
)
from tests.inference.test_server import error_of, structured

pytestmark = pytest.mark.anyio

HELLO = [ChatMessage(role="user", content="Write a long story about a dragon.")]


def chat(model: str, max_tokens: int) -> Request:
    return Request(model=model, messages=HELLO, options={"max_tokens": max_tokens})


async def test_the_queue_orders_by_tier_refuses_past_its_bound_and_cancelling_frees_the_slot(
    tmp_path: Path, ollama: Backend, llama: Backend
) -> None:
    """With one slot and a queue of two, a contracted caller is served before an earlier
    marketplace caller, a fourth request is refused with resource_exhausted/queue_full at once,
    and a cancelled stream is recorded as cancelled (DESIGN.md section 8: bounded queues)."""
    models = [
        ModelConfig(
            name="gemma",
            backend="llamacpp",
            backend_model=MODEL,
            concurrency_max=1,
            queue_depth_max=2,
        )
    ]
    settings = make_settings(tmp_path, ollama.url, llama.url, models=models)
    started: list[str] = []
    refused: list[AiosError] = []
    async with InferenceService.open(settings) as service:
        gate = service.gate(service.entry("gemma"))
        first_chunk = anyio.Event()

        async def run(name: str, caller: Caller, tokens: int) -> None:
            async def on_text(text: str) -> None:
                if name not in started:
                    started.append(name)
                first_chunk.set()

            try:
                await service.generate(chat("gemma", tokens), caller, on_text)
            except AiosError as error:
                refused.append(error)

        async with anyio.create_task_group() as group:
            with anyio.fail_after(60):
                holder = anyio.CancelScope()

                async def hold() -> None:
                    with holder:
                        await run("holder", Caller(caller="h"), 1500)

                group.start_soon(hold)
                await first_chunk.wait()
                group.start_soon(run, "market", Caller(caller="m", tier="marketplace"), 3)
                await poll_until(lambda: _at(gate.queued, 1))
                group.start_soon(run, "contract", Caller(caller="c", tier="contracted"), 3)
                await poll_until(lambda: _at(gate.queued, 2))
                await run("overflow", Caller(caller="o"), 3)
                assert [error.details["reason"] for error in refused] == ["queue_full"]
                holder.cancel()
        page, totals, _ = await service.store.query(UsageFilter(), after=0, limit=10)
    assert started == ["holder", "contract", "market"]
    assert refused[0].code == "resource_exhausted"
    assert sorted(record.outcome for record in page) == ["cancelled", "ok", "ok"]
    assert totals.calls == 3


async def _at(value: int, wanted: int) -> bool | None:
    return True if value == wanted else None


@pytest.fixture(scope="module")
def busy_ollama(
    ollama_store: Path, tmp_path_factory: pytest.TempPathFactory, ollama: Backend
) -> Iterator[Backend]:
    """An Ollama that runs one request and queues one more, then answers 503."""
    log = tmp_path_factory.mktemp("busy") / "ollama.log"
    with ollama_server(ollama_store, log, OLLAMA_NUM_PARALLEL="1", OLLAMA_MAX_QUEUE="1") as backend:
        http_json(
            f"{backend.url}/api/generate",
            {"model": MODEL, "prompt": "hi", "options": {"num_predict": 1}, "stream": False},
        )
        yield backend


async def _burst(settings: Any, count: int) -> list[dict[str, Any]]:
    """``count`` simultaneous chats through the service; results or error payloads."""
    results: list[dict[str, Any]] = []
    async with InferenceService.open(settings) as service:

        async def one(index: int) -> None:
            request = Request(
                model="gemma",
                messages=[ChatMessage(role="user", content=f"Tell story number {index}.")],
                options={"max_tokens": 32},
            )
            try:
                result = await service.generate(request, Caller(caller=f"c{index}"))
            except AiosError as error:
                results.append(error.to_payload().model_dump() | {"is_error": True})
            else:
                results.append(result.model_dump() | {"is_error": False})

        async with anyio.create_task_group() as group:
            for index in range(count):
                group.start_soon(one, index)
    return results


async def test_a_backend_503_maps_to_resource_exhausted_overloaded(
    tmp_path: Path, busy_ollama: Backend
) -> None:
    """Ollama's 'server busy' (503) reaches the caller as a typed overload error, not a hang."""
    models = [ModelConfig(name="gemma", backend="ollama", backend_model=MODEL, concurrency_max=8)]
    settings = make_settings(tmp_path, busy_ollama.url, None, models=models)
    results = await _burst(settings, 8)
    errors = [
        (result["code"], result["details"]["reason"]) for result in results if result["is_error"]
    ]
    assert errors
    assert set(errors) == {("resource_exhausted", "overloaded")}
    assert len(results) - len(errors) >= 2


async def test_overload_falls_back_to_the_next_model_of_the_chain(
    tmp_path: Path, busy_ollama: Backend, llama: Backend
) -> None:
    """Fallback on overload: every request is answered, some by the second backend, and the
    attempts name the overload that moved them on."""
    models = [
        ModelConfig(
            name="gemma",
            backend="ollama",
            backend_model=MODEL,
            concurrency_max=8,
            fallbacks=["gemma-cpp"],
        ),
        ModelConfig(name="gemma-cpp", backend="llamacpp", backend_model=MODEL),
    ]
    settings = make_settings(tmp_path, busy_ollama.url, llama.url, models=models)
    results = await _burst(settings, 8)
    assert [result["is_error"] for result in results] == [False] * 8
    moved = [result for result in results if result["backend"] == "llamacpp"]
    assert moved
    for result in moved:
        assert [attempt["outcome"] for attempt in result["attempts"]] == ["overloaded", "ok"]


async def test_a_backend_killed_mid_stream_falls_back_to_the_second_backend(
    tmp_path: Path, ollama_store: Path, llama: Backend
) -> None:
    """kill -9 of the Ollama serving a stream: the call completes on llama.cpp, the attempts
    record backend_unavailable, and progress went on across the switch."""
    log = tmp_path / "doomed.log"
    with ollama_server(ollama_store, log) as doomed:
        models = [
            ModelConfig(
                name="gemma", backend="ollama", backend_model=MODEL, fallbacks=["gemma-cpp"]
            ),
            ModelConfig(name="gemma-cpp", backend="llamacpp", backend_model=MODEL),
        ]
        settings = make_settings(tmp_path, doomed.url, llama.url, models=models)
        messages: list[str] = []

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            messages.append(message or "")
            if len(messages) == 3:
                kill_group(doomed.process)

        async with Client(build_server(settings)) as client:
            result = await client.call_tool(
                "chat",
                {
                    "model": "gemma",
                    "messages": [{"role": "user", "content": "Tell a story."}],
                    "options": {"max_tokens": 40},
                },
                progress_callback=on_progress,
            )
            ledger = structured(await client.call_tool("usage", {}))
    content = structured(result)
    assert not result.is_error, content
    assert content["backend"] == "llamacpp"
    assert [(a["backend"], a["outcome"]) for a in content["attempts"]] == [
        ("ollama", "backend_unavailable"),
        ("llamacpp", "ok"),
    ]
    assert len(messages) > 3
    assert "".join(messages).endswith(content["text"])
    assert [record["outcome"] for record in ledger["records"]] == ["backend_unavailable", "ok"]


async def test_admission_refuses_a_load_that_does_not_fit_and_evicts_nothing(
    tmp_path: Path, ollama: Backend
) -> None:
    """A model larger than the host's memory is refused with resource_exhausted/does_not_fit
    before anything is evicted: the resident idle model stays (issue 6: admission)."""
    http_json(f"{ollama.url}/api/copy", {"source": MODEL, "destination": "gemma-copy"})
    http_json(f"{ollama.url}/api/generate", {"model": MODEL, "prompt": "", "keep_alive": "5m"})
    settings = make_settings(
        tmp_path,
        ollama.url,
        None,
        default_backend=False,
        backends=[BackendConfig(name="ollama", url=ollama.url, memory_bytes=100_000_000)],
        models=[
            ModelConfig(
                name="copy",
                backend="ollama",
                backend_model="gemma-copy",
                size_bytes=GEMMA.stat().st_size,
            )
        ],
    )
    async with Client(build_server(settings)) as client:
        refused = await client.call_tool("load_model", {"model": "copy"})
        chat = await client.call_tool(
            "chat", {"model": "copy", "messages": [{"role": "user", "content": "hi"}]}
        )
        after = structured(await client.call_tool("loaded_models", {}))["result"]
    assert error_of(refused) == ("resource_exhausted", "does_not_fit")
    assert error_of(chat) == ("resource_exhausted", "does_not_fit")
    assert [row["model"] for row in after] == [MODEL]


async def test_cancelling_a_call_stops_the_backend_request(
    tmp_path: Path, ollama: Backend, llama: Backend
) -> None:
    """Cancellation reaches the backend: llama.cpp's slot stops processing long before the
    1900 requested tokens could have been generated."""
    settings = make_settings(tmp_path, ollama.url, llama.url)
    async with Client(build_server(settings)) as client:
        streaming = anyio.Event()

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            streaming.set()

        with anyio.move_on_after(30) as scope:
            async with anyio.create_task_group() as group:

                async def call() -> None:
                    await client.call_tool(
                        "chat",
                        {
                            "model": "gemma-cpp",
                            "messages": [{"role": "user", "content": "Story"}],
                            "options": {"max_tokens": 1900},
                        },
                        progress_callback=on_progress,
                    )

                group.start_soon(call)
                await streaming.wait()
                group.cancel_scope.cancel()
        assert not scope.cancelled_caught

        async def idle() -> bool | None:
            slots = await anyio.to_thread.run_sync(http_json, f"{llama.url}/slots")
            return True if not any(slot.get("is_processing") for slot in slots) else None

        await poll_until(idle, deadline_s=10)
        ledger = structured(await poll_until(lambda: _usage_when(client, "cancelled")))
    assert [record["outcome"] for record in ledger["records"]] == ["cancelled"]
    assert ledger["records"][0]["completion_tokens"] < 1900


async def _usage_when(client: Client, outcome: str) -> Any:
    result = await client.call_tool("usage", {})
    records = structured(result)["records"]
    return result if records and records[-1]["outcome"] == outcome else None


async def test_idle_eviction_unloads_unpinned_models_and_keeps_pinned_ones(
    tmp_path: Path, ollama: Backend
) -> None:
    """Residency: an idle, unpinned model is evicted; a pinned one stays resident."""
    settings = make_settings(tmp_path, ollama.url, None)
    async with Client(build_server(settings)) as client:
        await client.call_tool("pin_model", {"model": "gemma"})
        await client.call_tool("load_model", {"model": SECOND_MODEL})
        async with InferenceService.open(settings) as service:
            evicted = await service.residency.evict_idle(0.0)
        resident = structured(await client.call_tool("loaded_models", {}))["result"]
        await client.call_tool("pin_model", {"model": "gemma", "pinned": False})
    assert f"ollama/{SECOND_MODEL}" in evicted
    assert f"ollama/{MODEL}" not in evicted
    assert [(row["model"], row["pinned"]) for row in resident] == [(MODEL, True)]


async def test_a_backend_past_its_deadline_is_a_typed_timeout_and_falls_back(
    tmp_path: Path, ollama: Backend, llama: Backend
) -> None:
    """A generation longer than the backend's timeout_s ends with timeout/backend_timeout, and
    with a fallback the call completes on the next model (issue 6: fallback on timeout)."""
    models = [
        ModelConfig(name="slow", backend="hasty", backend_model=MODEL),
        ModelConfig(
            name="slow-with-fallback", backend="hasty", backend_model=MODEL, fallbacks=["gemma"]
        ),
        ModelConfig(name="gemma", backend="ollama", backend_model=MODEL),
    ]
    # 64 tokens of gemma-3-270m take llama.cpp on CPU far longer than 10 ms.
    hasty = BackendConfig(name="hasty", kind="openai", url=llama.url, timeout_s=0.01)
    settings = make_settings(tmp_path, ollama.url, None, models=models, backends=[hasty])
    long_story = [{"role": "user", "content": "Tell a very long story."}]
    async with Client(build_server(settings)) as client:
        timed_out = await client.call_tool(
            "chat", {"model": "slow", "messages": long_story, "options": {"max_tokens": 64}}
        )
        rescued = await client.call_tool(
            "chat",
            {"model": "slow-with-fallback", "messages": long_story, "options": {"max_tokens": 64}},
        )
    assert error_of(timed_out) == ("timeout", "backend_timeout")
    assert [attempt["outcome"] for attempt in structured(rescued)["attempts"]] == [
        "backend_timeout",
        "ok",
    ]
    assert structured(rescued)["usage"]["completion_tokens"] > 0
