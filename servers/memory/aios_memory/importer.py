"""Import from the reference MCP memory server's JSONL and ContextFS-style records; export to
JSONL (spec/memory.md sections 2.2 and 5, "Mapping").

Reference server lines: ``{"type": "entity", "name", "entityType", "observations": [...]}`` and
``{"type": "relation", "from", "to", "relationType"}``. An entity becomes a memory of its
``entityType`` when that is one of the 24 types with a ``name`` field, else a ``context``; each
observation becomes an ``annotation`` targeting it; a relation becomes a link (free-text types
become ``related_to`` with the original in metadata).

ContextFS lines: ``{"id"?, "type", "content", "summary"?, "tags"?, "structured_data"?, ...}``.
ContextFS-only types map as the spec says (user -> config, code -> artifact(kind=code), ...);
the content fills the type's main text field, anything else goes to ``attributes``.
"""

from __future__ import annotations

import json
from typing import Any, Final

from aios_memory.errors import invalid
from aios_memory.models import ExportResult, ImportResult, SaveItem
from aios_memory.schemas import TYPE_ALIASES, TYPES
from aios_memory.service import MemoryService
from aios_memory.store import RELATIONS
from aios_memory.validation import normalize_relation
from aios_shared.errors import InvalidArgument

__all__ = ["export_jsonl", "import_jsonl"]

_CONTEXTFS_TYPES: Final[dict[str, tuple[str, dict[str, Any]]]] = {
    "user": ("config", {}),
    "code": ("artifact", {"kind": "code"}),
    "error": ("issue", {"severity": "medium"}),
    "commit": ("event", {}),
    "test": ("artifact", {"kind": "code"}),
    "review": ("context", {}),
    "release": ("event", {}),
    "dependency": ("config", {}),
    "doc": ("artifact", {"kind": "document"}),
}
# The field that carries a record's main text, and the defaults a bare record needs.
_MAIN_FIELD: Final[dict[str, tuple[str, dict[str, Any]]]] = {
    "fact": ("assertion", {}),
    "decision": ("decision", {"rationale": "(imported)"}),
    "procedural": ("name", {"steps": ["(imported)"]}),
    "episodic": ("event", {"outcome": "unknown"}),
    "todo": ("title", {}),
    "issue": ("title", {"severity": "medium"}),
    "api": ("endpoint", {}),
    "schema_def": ("name", {}),
    "workflow": ("name", {"steps": ["(imported)"]}),
    "task": ("name", {}),
    "agent_run": ("task", {"agent_id": "unknown"}),
    "config": ("name", {}),
    "context": ("name", {}),
    "person": ("name", {}),
    "project": ("name", {}),
    "artifact": ("name", {"kind": "other"}),
    "event": ("title", {}),
    "log": ("message", {"level": "info"}),
}


def _lines(jsonl: str) -> list[dict[str, Any]]:
    documents = []
    for number, line in enumerate(jsonl.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            document = json.loads(line)
        except json.JSONDecodeError as error:
            raise invalid("schema_violation", f"Line {number} is not JSON: {error.msg}.") from None
        if not isinstance(document, dict):
            raise invalid("schema_violation", f"Line {number} is not a JSON object.")
        documents.append(document)
    return documents


def _entity_type(entity_type: object) -> str:
    name = TYPE_ALIASES.get(str(entity_type), str(entity_type))
    info = TYPES.get(name)
    if info is not None and _MAIN_FIELD.get(name, ("",))[0] == "name":
        return name
    return "context"


async def import_jsonl(
    service: MemoryService, jsonl: str, format: str, namespace: str
) -> ImportResult:
    """Import one JSONL document atomically.

    Raises:
        InvalidArgument: a line that is not JSON, or a record that does not map.
    """
    documents = _lines(jsonl)
    if format == "contextfs":
        items = [_contextfs_item(service, doc, namespace, i) for i, doc in enumerate(documents)]
        memories, _ = await service.import_graph(items, [])
        return ImportResult(format=format, memories=memories, edges=0, annotations=0, skipped=[])
    return await _import_reference(service, documents, namespace)


async def _import_reference(
    service: MemoryService, documents: list[dict[str, Any]], namespace: str
) -> ImportResult:
    ids: dict[str, str] = {}
    items: list[SaveItem] = []
    annotations: list[SaveItem] = []
    links: list[tuple[str, str, str, dict[str, Any]]] = []
    skipped: list[str] = []
    for document in documents:
        if document.get("type") != "entity":
            continue
        name = document.get("name")
        if not isinstance(name, str) or not name:
            raise invalid("schema_violation", f"Entity without a name: {document!r:.200}.")
        if name in ids:
            skipped.append(f"duplicate entity {name!r}")
            continue
        ids[name] = service.new_id()
        kind = _entity_type(document.get("entityType"))
        data: dict[str, Any] = {"name": name}
        if kind == "context" or kind != document.get("entityType"):
            data["attributes"] = {"entity_type": document.get("entityType")}
        items.append(SaveItem(type=kind, data=data, namespace=namespace, id=ids[name]))
        annotations.extend(
            SaveItem(
                type="annotation",
                data={"target_id": ids[name], "body": str(observation)},
                namespace=namespace,
                id=service.new_id(),
            )
            for observation in document.get("observations") or []
        )
    for document in documents:
        if document.get("type") != "relation":
            continue
        source, target = ids.get(str(document.get("from"))), ids.get(str(document.get("to")))
        if source is None or target is None or source == target:
            skipped.append(f"relation {document.get('from')!r} -> {document.get('to')!r}")
            continue
        raw = str(document.get("relationType", "related_to"))
        try:
            normalize_relation(raw, source, target)
            links.append((source, target, raw, {}))
        except InvalidArgument:
            links.append((source, target, "related_to", {"relation_type": raw}))
    await service.import_graph([*items, *annotations], links)
    return ImportResult(
        format="mcp_memory",
        memories=len(items),
        edges=len(links),
        annotations=len(annotations),
        skipped=skipped,
    )


def _contextfs_item(
    service: MemoryService, document: dict[str, Any], namespace: str, index: int
) -> SaveItem:
    raw_type = str(document.get("type", "fact"))
    kind, implied = _CONTEXTFS_TYPES.get(raw_type, (TYPE_ALIASES.get(raw_type, raw_type), {}))
    if kind not in TYPES:
        raise invalid("unknown_type", f"Record {index}: unknown type {raw_type!r}.", index=index)
    content = str(document.get("content") or document.get("summary") or "(empty)")
    structured = document.get("structured_data")
    data: dict[str, Any] = dict(structured) if isinstance(structured, dict) else {}
    data = {**implied, **data}
    main, defaults = _MAIN_FIELD.get(kind, ("", {}))
    if main and main not in data:
        data[main] = content if len(content) <= 200 or kind == "fact" else content[:200]
    for key, value in defaults.items():
        data.setdefault(key, value)
    if kind == "event":
        data.setdefault("starts_at", document.get("created_at") or "1970-01-01T00:00:00Z")
    leftovers = {
        key: value
        for key, value in document.items()
        if key not in {"id", "type", "content", "summary", "tags", "structured_data"}
    }
    if raw_type != kind:
        leftovers["contextfs_type"] = raw_type
    if leftovers:
        data["attributes"] = {**data.get("attributes", {}), **leftovers}
    raw_id = document.get("id")
    return SaveItem(
        type=kind,
        data=data,
        text=content,
        summary=document.get("summary") if isinstance(document.get("summary"), str) else None,
        tags=[str(tag).lower() for tag in document.get("tags") or []],
        namespace=namespace,
        id=raw_id if isinstance(raw_id, str) and len(raw_id) == 36 else service.new_id(),
    )


async def export_jsonl(
    service: MemoryService, namespace: str | None, cursor: str | None, limit: int
) -> ExportResult:
    """One page of persistent memories (with data) and their outgoing edges as JSON lines."""
    if not 1 <= limit <= service.limits.export_page_max:
        raise invalid("limit_out_of_range", f"limit must be 1..{service.limits.export_page_max}.")
    page = await service.list_records(
        namespace=namespace, tier="persistent", order="created_asc", limit=limit, cursor=cursor
    )
    records = await service.get_many([r.id for r in page.records], include_edges=True)
    lines = [json.dumps({"kind": "memory", **r.model_dump(mode="json")}) for r in records.records]
    own = {r.id for r in records.records}
    lines += [
        json.dumps({"kind": "edge", **e.model_dump(mode="json")})
        for e in records.edges
        if e.from_id in own
    ]
    return ExportResult(
        jsonl="\n".join(lines), count=len(records.records), next_cursor=page.next_cursor
    )


assert "related_to" in RELATIONS
