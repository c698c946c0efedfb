"""The MCP surface against real backends: streaming, metering, structured output, embeddings,
parity of the two backend kinds, residency tools and typed errors for bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, cast

import jsonschema
import pytest
from mcp import Client
from mcp.types import CallToolResult, RequestParamsMeta, TextResourceContents

from aios_inference.config import InferenceSettings, ModelConfig
from aios_inference.server import build_server
from aios_inference.store import UsageStore
from tests.inference.conftest import MODEL, SECOND_MODEL, Backend, make_settings
from tests.inference.registry import loopback_registry

pytestmark = pytest.mark.anyio

HELLO = [{"role": "user", "content": "Say hello to the world."}]
CITY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
    "required": ["city", "country"],
}


def structured(result: CallToolResult) -> dict[str, Any]:
    content = result.structured_content
    assert isinstance(content, dict), result
    return dict(content)


def error_of(result: CallToolResult) -> tuple[str, str]:
    """The (code, reason) of an error result."""
    assert result.is_error, result
    content = structured(result)
    return content["code"], content["details"].get("reason", "")


async def test_streamed_chunks_arrive_in_order_as_progress_and_make_up_the_text(
    settings: InferenceSettings,
) -> None:
    """Each backend chunk is relayed as one progress notification, in order; joined they are
    exactly the returned text (issue 6, streaming)."""
    received: list[tuple[float, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        received.append((progress, message))

    async with Client(build_server(settings)) as client:
        result = await client.call_tool(
            "chat",
            {"model": "gemma", "messages": HELLO, "options": {"max_tokens": 12, "seed": 1}},
            progress_callback=on_progress,
        )
    content = structured(result)
    assert len(received) >= 2
    assert [progress for progress, _ in received] == list(range(1, len(received) + 1))
    assert "".join(message or "" for _, message in received) == content["text"]
    assert content["usage"]["completion_tokens"] == 12
    assert content["finish_reason"] == "length"


async def test_every_call_records_tokens_durations_and_cost_per_agent_and_job(
    settings: InferenceSettings,
) -> None:
    """The usage returned with a call is the usage stored for its agent and job, with the
    registry's prices applied (issue 6, metering)."""
    async with Client(build_server(settings)) as client:
        result = await client.call_tool(
            "chat",
            {
                "model": "gemma",
                "messages": HELLO,
                "options": {"max_tokens": 5},
                "agent_id": "agent-7",
                "job_id": "job-42",
            },
        )
        await client.call_tool(
            "chat", {"model": "gemma", "messages": HELLO, "options": {"max_tokens": 3}}
        )
        page = await client.call_tool("usage", {"job_id": "job-42"})
    usage = structured(result)["usage"]
    records = structured(page)["records"]
    assert usage["prompt_tokens"] > 0
    assert usage["completion_tokens"] == 5
    assert usage["completion_ms"] > 0
    assert usage["total_ms"] >= usage["completion_ms"]
    assert usage["cost"] == pytest.approx((usage["prompt_tokens"] * 0.5 + 5 * 1.5) / 1000)
    assert [record["agent_id"] for record in records] == ["agent-7"]
    assert records[0]["prompt_tokens"] == usage["prompt_tokens"]
    assert records[0]["completion_tokens"] == 5
    assert records[0]["cost"] == pytest.approx(usage["cost"])
    assert records[0]["backend"] == "ollama"
    assert structured(page)["totals"]["calls"] == 1


@pytest.mark.parametrize("model", ["gemma", "gemma-cpp"])
async def test_a_json_schema_yields_output_that_validates_against_it(
    settings: InferenceSettings, model: str
) -> None:
    """Structured output on both backend kinds: the text parses and matches the schema."""
    async with Client(build_server(settings)) as client:
        result = await client.call_tool(
            "chat",
            {
                "model": model,
                "messages": [{"role": "user", "content": "Name a city and its country."}],
                "json_schema": CITY_SCHEMA,
                "options": {"max_tokens": 60, "temperature": 0},
            },
        )
    content = structured(result)
    jsonschema.validate(json.loads(content["text"]), CITY_SCHEMA)
    assert content["parsed"] == json.loads(content["text"])


def cosine(left: list[float], right: list[float]) -> float:
    dot = sum(a * b for a, b in zip(left, right, strict=True))
    return dot / (math.sqrt(sum(a * a for a in left)) * math.sqrt(sum(b * b for b in right)))


@pytest.mark.parametrize("model", ["gemma", "gemma-cpp"])
async def test_embeddings_rank_a_paraphrase_above_an_unrelated_sentence(
    settings: InferenceSettings, model: str
) -> None:
    """Embeddings for memory: one vector per input, and similarity follows meaning."""
    inputs = [
        "The cat is sleeping on the warm sofa.",
        "A cat naps on the cozy couch.",
        "Quarterly revenue of the bank rose by ten percent.",
    ]
    async with Client(build_server(settings)) as client:
        result = await client.call_tool("embed", {"model": model, "inputs": inputs})
    vectors = structured(result)["embeddings"]
    assert len(vectors) == 3
    assert len({len(vector) for vector in vectors}) == 1
    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2])
    assert structured(result)["usage"]["prompt_tokens"] > 0


async def test_both_backend_kinds_answer_the_same_prompts_alike(
    settings: InferenceSettings,
) -> None:
    """Parity: the same prompts through Ollama and llama.cpp give the same result shape, the
    requested token counts, the same finish reasons and a usage row each."""
    prompts = ["Say hello to the world.", "Count from one to five."]
    results: dict[str, list[dict[str, Any]]] = {"gemma": [], "gemma-cpp": []}
    async with Client(build_server(settings)) as client:
        for model, collected in results.items():
            for prompt in prompts:
                result = await client.call_tool(
                    "chat",
                    {
                        "model": model,
                        "messages": [{"role": "user", "content": prompt}],
                        "options": {"max_tokens": 6, "temperature": 0},
                    },
                )
                collected.append(structured(result))
        ledger = structured(await client.call_tool("usage", {}))
    for ollama_result, llama_result in zip(results["gemma"], results["gemma-cpp"], strict=True):
        assert set(ollama_result) == set(llama_result)
        assert ollama_result["usage"]["completion_tokens"] == 6
        assert llama_result["usage"]["completion_tokens"] == 6
        assert ollama_result["finish_reason"] == llama_result["finish_reason"] == "length"
        assert ollama_result["text"] and llama_result["text"]
    assert [record["backend"] for record in ledger["records"]] == ["ollama"] * 2 + ["llamacpp"] * 2


@pytest.mark.parametrize(
    ("arguments", "code", "reason"),
    [
        pytest.param(
            {"model": "no-such-model", "messages": HELLO},
            "not_found",
            "model_not_found",
            id="unknown-model",
        ),
        pytest.param(
            {"model": "gemma", "messages": [{"role": "user", "content": "word " * 3000}]},
            "invalid_argument",
            "prompt_too_large",
            id="oversized-prompt",
        ),
        pytest.param(
            {"model": "gemma", "messages": HELLO, "options": {"temperature": -1}},
            "invalid_argument",
            "invalid_options",
            id="negative-temperature",
        ),
        pytest.param(
            {"model": "gemma", "messages": HELLO, "options": {"mirostat": 2}},
            "invalid_argument",
            "invalid_options",
            id="unknown-option",
        ),
        pytest.param(
            {"model": "gemma", "messages": HELLO, "options": {"max_tokens": 100_000}},
            "invalid_argument",
            "invalid_options",
            id="max-tokens-over-context",
        ),
        pytest.param(
            {"model": "gemma", "messages": HELLO, "json_schema": {"type": "no-such-type"}},
            "invalid_argument",
            "invalid_schema",
            id="invalid-schema",
        ),
    ],
)
async def test_bad_input_gets_a_typed_error(
    settings: InferenceSettings, arguments: dict[str, Any], code: str, reason: str
) -> None:
    """Bad input is refused with a typed error naming the reason; invalid input is refused
    before anything is sent, so only the backend's 404 leaves a (failed) usage row."""
    async with Client(build_server(settings)) as client:
        result = await client.call_tool("chat", arguments)
        ledger = structured(await client.call_tool("usage", {}))
    assert error_of(result) == (code, reason)
    expected = ["model_not_found"] if reason == "model_not_found" else []
    assert [record["outcome"] for record in ledger["records"]] == expected


async def test_keep_alive_pin_and_unload_are_visible_in_the_loaded_models(
    settings: InferenceSettings,
) -> None:
    """Residency: a pin shows as pinned with no expiry, an unload removes the model, a load
    with keep_alive brings it back (issue 6, residency control)."""
    async with Client(build_server(settings)) as client:
        pinned = structured(await client.call_tool("pin_model", {"model": "gemma"}))
        unloaded = structured(await client.call_tool("unload_model", {"model": "gemma"}))
        loaded = structured(
            await client.call_tool("load_model", {"model": "gemma", "keep_alive": "2m"})
        )
        listed = structured(await client.call_tool("loaded_models", {}))
    pinned_rows = [row for row in pinned["loaded"] if row["backend"] == "ollama"]
    assert [row["pinned"] for row in pinned_rows] == [True]
    assert pinned_rows[0]["model"] == MODEL
    assert pinned_rows[0]["size_bytes"] > 0
    assert pinned_rows[0]["expires_at"] is None or pinned_rows[0]["expires_at"] > "2100"
    assert MODEL not in [row["model"] for row in unloaded["loaded"] if row["backend"] == "ollama"]
    reloaded = [row for row in loaded["loaded"] if row["backend"] == "ollama"]
    assert [row["pinned"] for row in reloaded] == [False]
    assert reloaded[0]["expires_at"] is not None
    assert MODEL in [row["model"] for row in listed["result"] if row["backend"] == "ollama"]


async def test_operator_tools_refuse_an_agent_principal(settings: InferenceSettings) -> None:
    """Operator tools are separated from agent tools: a request made for an agent is refused,
    audited, and nothing is unloaded."""
    async with Client(build_server(settings)) as client:
        await client.call_tool("load_model", {"model": "gemma"})
        refused = await client.call_tool(
            "unload_model",
            {"model": "gemma"},
            meta=cast(RequestParamsMeta, {"io.aios/principal": {"kind": "agent", "id": "a1"}}),
        )
        listed = structured(await client.call_tool("loaded_models", {}))
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    async with UsageStore.open(settings.database_path) as store:
        audited = await store.audit_log.query()
    assert error_of(refused) == ("permission_denied", "operator_only")
    assert MODEL in [row["model"] for row in listed["result"]]
    assert [(entry.actor, entry.action, entry.outcome) for entry in audited] == [
        ("operator", "model.load", "ok"),
        ("agent:a1", "model.unload", "permission_denied"),
    ]
    assert tools["unload_model"].meta == {"io.aios/audience": "operator"}
    assert tools["chat"].meta == {"io.aios/audience": "agent"}


async def test_list_models_shows_the_registry_and_what_backends_hold(
    tmp_path: Path, ollama: Backend, llama: Backend
) -> None:
    """The model list merges the registry (prices, context, placement) with the backends;
    an unregistered model of a second backend is named and called as `backend/model`."""
    registry = [
        ModelConfig(
            name="gemma", backend="ollama", backend_model=MODEL, price_completion_per_1k=1.5
        )
    ]
    settings = make_settings(tmp_path, ollama.url, llama.url, models=registry)
    async with Client(build_server(settings)) as client:
        listed = structured(await client.call_tool("list_models", {}))
        other = await client.call_tool(
            "chat",
            {"model": f"llamacpp/{MODEL}", "messages": HELLO, "options": {"max_tokens": 2}},
        )
    by_name = {model["name"]: model for model in listed["models"]}
    assert (by_name["gemma"]["available"], by_name["gemma"]["registered"]) == (True, True)
    assert by_name["gemma"]["price_completion_per_1k"] == 1.5
    assert MODEL not in by_name  # listed once, under its registry name
    assert (by_name[SECOND_MODEL]["backend"], by_name[SECOND_MODEL]["registered"]) == (
        "ollama",
        False,
    )
    assert by_name[f"llamacpp/{MODEL}"]["backend"] == "llamacpp"
    assert structured(other)["backend"] == "llamacpp"
    assert listed["unreachable_backends"] == []


async def test_pull_reports_progress_and_the_pulled_model_is_listed(
    settings: InferenceSettings, ollama_store: Path
) -> None:
    """Pull through the operator tool from a loopback registry: progress notifications carry
    the backend's statuses, ending in success, and the model is then listed."""
    statuses: list[str] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        statuses.append(message or "")

    with loopback_registry(ollama_store) as registry:
        name = f"{registry}/library/{MODEL}:latest"
        async with Client(build_server(settings)) as client:
            pulled = await client.call_tool(
                "pull_model",
                {"model": name, "insecure": True},
                progress_callback=on_progress,
            )
            listed = structured(await client.call_tool("list_models", {}))
    assert structured(pulled)["status"] == "success"
    assert statuses[0] == "pulling manifest"
    assert statuses[-1] == "success"
    assert name.removesuffix(":latest") in [model["name"] for model in listed["models"]]


async def test_pulling_from_an_unreachable_registry_is_a_typed_error(
    settings: InferenceSettings,
) -> None:
    """A registry nobody listens on: the pull fails with a typed error, nothing is listed."""
    async with Client(build_server(settings)) as client:
        failed = await client.call_tool(
            "pull_model", {"model": f"127.0.0.1:9/library/{MODEL}:latest", "insecure": True}
        )
    assert error_of(failed) == ("tool_failed", "backend_failed")
    assert "connection refused" in structured(failed)["message"]


async def test_tools_reach_the_backend_and_a_template_without_tools_is_a_typed_error(
    settings: InferenceSettings,
) -> None:
    """Tool definitions pass through to Ollama; gemma-3-270m's template has no tool support,
    and Ollama's refusal (400) reaches the caller as invalid_argument/backend_rejected."""
    weather = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather of a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
    async with Client(build_server(settings)) as client:
        result = await client.call_tool(
            "chat", {"model": "gemma", "messages": HELLO, "tools": [weather]}
        )
    assert error_of(result) == ("invalid_argument", "backend_rejected")
    assert "does not support tools" in structured(result)["message"]


async def test_usage_and_models_are_readable_as_resources(settings: InferenceSettings) -> None:
    """The usage of an agent and the model list are resources as well as tools."""
    async with Client(build_server(settings)) as client:
        chat = structured(
            await client.call_tool(
                "chat",
                {
                    "model": "gemma",
                    "messages": HELLO,
                    "options": {"max_tokens": 2},
                    "agent_id": "agent-r",
                },
            )
        )
        usage = await client.read_resource("inference://usage/agent/agent-r")
        models = await client.read_resource("inference://models")
    usage_text = usage.contents[0]
    models_text = models.contents[0]
    assert isinstance(usage_text, TextResourceContents)
    assert isinstance(models_text, TextResourceContents)
    page = json.loads(usage_text.text)
    assert [record["request_id"] for record in page["records"]] == [chat["request_id"]]
    assert "gemma" in [model["name"] for model in json.loads(models_text.text)["models"]]


@pytest.mark.parametrize("model", ["gemma", "gemma-cpp"])
async def test_generate_completes_a_raw_prompt(settings: InferenceSettings, model: str) -> None:
    """Raw completion (no chat messages) on both backend kinds, metered like chat."""
    async with Client(build_server(settings)) as client:
        result = await client.call_tool(
            "generate",
            {"model": model, "prompt": "The capital of France is", "options": {"max_tokens": 4}},
        )
    content = structured(result)
    assert content["text"]
    assert content["usage"]["completion_tokens"] == 4
    assert content["usage"]["prompt_tokens"] > 0
