"""Hypothesis fuzzing of every tool's arguments (issue 4): whatever arrives, the answer is a
result or a typed error (never ``internal``), and a refused call writes nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mcp_types as types
from anyio.from_thread import start_blocking_portal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client

from aios_memory.config import MemorySettings
from aios_memory.schemas import TYPES
from aios_memory.server import build_server
from aios_memory.store import RELATIONS
from aios_shared.errors import ERROR_CODES

EXAMPLES_MAX = 300
KNOWN_IDS = ["00000000-0000-7000-8000-000000000001", "00000000-0000-7000-8000-000000000002"]

json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
)
json_value = st.recursive(
    json_leaf,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
plausible = st.one_of(
    st.sampled_from([*KNOWN_IDS, "abc", "00000000-0000-7000-8000-0000000000FF", ""]),
    st.sampled_from([*TYPES, "memo", "schema"]),
    st.sampled_from([*RELATIONS, "evolved_from", "likes"]),
    st.sampled_from(["global", "agent:x", "Bad Namespace", "working", "persistent", "all"]),
    st.integers(min_value=-3, max_value=8),
    st.just({"assertion": "fuzzed"}),
    st.lists(st.sampled_from(["tag", "UPPER", "bad tag", "x" * 70]), max_size=3),
)


def arguments_for(tool: types.Tool) -> st.SearchStrategy[dict[str, Any]]:
    properties = list((tool.input_schema or {}).get("properties", {}))
    value = st.one_of(plausible, json_value)
    chosen = st.fixed_dictionaries({}, optional=dict.fromkeys(properties, value))
    extra = st.dictionaries(st.sampled_from(["zz", "_meta_x", "type2"]), json_value, max_size=1)
    return st.builds(lambda a, b: {**a, **b}, chosen, extra)


def test_fuzzed_tool_arguments_get_results_or_typed_errors_and_refusals_write_nothing(
    tmp_path: Path,
) -> None:
    """Every tool, random arguments: is_error results carry a known non-internal code, and the
    durable-state digest is unchanged after each refusal."""
    server = build_server(MemorySettings(home=tmp_path, node_id="fuzz"))
    with start_blocking_portal() as portal:
        with portal.wrap_async_context_manager(Client(server, mode="legacy")) as client:
            for memory_id in KNOWN_IDS:
                portal.call(
                    client.call_tool,
                    "save",
                    {"type": "fact", "data": {"assertion": memory_id}, "id": memory_id},
                )
            tools = portal.call(client.list_tools).tools

            def digest() -> str:
                result = portal.call(client.read_resource, "memory://state/digest")
                content = result.contents[0]
                assert isinstance(content, types.TextResourceContents)
                return content.text

            @settings(
                max_examples=EXAMPLES_MAX,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow],
                derandomize=True,
            )
            @given(data=st.data())
            def check(data: st.DataObject) -> None:
                tool = data.draw(st.sampled_from(tools))
                arguments = data.draw(arguments_for(tool))
                before = digest()
                result = portal.call(client.call_tool, tool.name, arguments)
                if result.is_error:
                    assert isinstance(result.structured_content, dict), result
                    code = result.structured_content["code"]
                    assert code in ERROR_CODES and code != "internal", (tool.name, result)
                    assert digest() == before, (tool.name, arguments)

            check()
