"""Import from the reference MCP memory server's JSONL and ContextFS records, export to JSONL
(spec/memory.md sections 2.2 and 5), on both backends."""

from __future__ import annotations

import json

import pytest

from aios_memory.importer import export_jsonl, import_jsonl
from aios_shared.errors import InvalidArgument
from tests.memory.conftest import ServiceFactory

pytestmark = pytest.mark.anyio

REFERENCE = "\n".join(
    json.dumps(line)
    for line in [
        {"type": "entity", "name": "Ada", "entityType": "person", "observations": ["codes"]},
        {"type": "entity", "name": "aios", "entityType": "project", "observations": []},
        {"type": "entity", "name": "Lisbon", "entityType": "city", "observations": ["sunny"]},
        {"type": "relation", "from": "Ada", "to": "aios", "relationType": "part_of"},
        {"type": "relation", "from": "Ada", "to": "Lisbon", "relationType": "lives in"},
    ]
)


async def test_reference_server_jsonl_becomes_typed_memories_annotations_and_links(
    open_service: ServiceFactory,
) -> None:
    """Entities map to their type or context, observations to annotations that reference the
    entity, free-text relations to related_to with the original in metadata."""
    async with open_service() as service:
        result = await import_jsonl(service, REFERENCE, "mcp_memory", "global")
        people = await service.search("ada", types=["person"])
        person_id = people.hits[0].id
        around = await service.neighbors(person_id, depth=1, direction="both")
        exported = await export_jsonl(service, None, None, 100)
    assert (result.memories, result.annotations, result.edges) == (3, 2, 2)
    relations = sorted(edge.relation for edge in around.edges)
    assert relations == ["part_of", "references", "related_to"]
    lives = next(edge for edge in around.edges if edge.relation == "related_to")
    assert lives.metadata == {"relation_type": "lives in"}
    kinds = [json.loads(line)["kind"] for line in exported.jsonl.splitlines()]
    assert kinds.count("memory") == 5
    assert kinds.count("edge") == 4


async def test_contextfs_records_map_their_types_and_keep_leftovers(
    open_service: ServiceFactory,
) -> None:
    """ContextFS-only types map per section 2.2 (code -> artifact kind code); unknown fields go
    to attributes; a line that is not JSON fails the whole import."""
    records = "\n".join(
        json.dumps(line)
        for line in [
            {"type": "fact", "content": "Tests need 60 s", "tags": ["Testing"]},
            {"type": "code", "content": "def login(): ...", "source_file": "auth.py"},
            {"type": "schema", "content": "users table"},
        ]
    )
    async with open_service() as service:
        result = await import_jsonl(service, records, "contextfs", "global")
        listed = await service.list_records(order="created_asc")
        code = await service.get(listed.records[1].id)
        with pytest.raises(InvalidArgument):
            await import_jsonl(service, records + "\nnot json", "contextfs", "global")
        after = await service.list_records()
    assert result.memories == 3
    assert [r.type for r in listed.records] == ["fact", "artifact", "schema_def"]
    assert code.data is not None
    assert code.data["kind"] == "code"
    assert code.data["attributes"] == {"source_file": "auth.py", "contextfs_type": "code"}
    assert listed.records[0].tags == ["testing"]
    assert len(after.records) == 3
