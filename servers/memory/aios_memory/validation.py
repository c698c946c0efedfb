"""Input checks that turn bad arguments into typed errors before anything is written."""

from __future__ import annotations

import json
import re
from typing import Any, Final

from pydantic import ValidationError

from aios_memory.canonical import canonical_bytes, content_hash, payload_of
from aios_memory.config import MemoryLimits
from aios_memory.errors import invalid
from aios_memory.schemas import ID_PATTERN, TAG_PATTERN, TYPE_ALIASES, TYPES, TypeInfo
from aios_memory.store import RELATIONS, SYMMETRIC
from aios_shared.errors import InvalidArgument

__all__ = [
    "Payload",
    "build_payload",
    "check_actor",
    "check_id",
    "check_namespace",
    "check_tags",
    "check_ttl",
    "merge_patch",
    "normalize_relation",
    "resolve_type",
]

_ID: Final = re.compile(ID_PATTERN)
_TAG: Final = re.compile(TAG_PATTERN)
_NAMESPACE: Final = re.compile(r"^[a-z][a-z0-9_-]{0,31}(:[A-Za-z0-9_.-]{1,64})?$")
_ACTOR: Final = re.compile(r"^[A-Za-z0-9_.:@-]{1,128}$")

# Inverse and ContextFS names accepted by ``link``: name -> (canonical relation, flip, metadata).
_RELATION_ALIASES: Final[dict[str, tuple[str, bool, dict[str, str]]]] = {
    "evolved_from": ("evolved_into", True, {}),
    "merged_from": ("derived_from", False, {}),
    "merged_into": ("derived_from", True, {}),
    "split_from": ("derived_from", False, {"op": "split"}),
    "split_into": ("derived_from", True, {"op": "split"}),
    "referenced_by": ("references", True, {}),
    "superseded_by": ("supersedes", True, {}),
    "resolved_by": ("resolves", True, {}),
    "parent_of": ("part_of", True, {}),
    "child_of": ("part_of", False, {}),
    "contains": ("part_of", True, {}),
    "caused_by": ("triggers", True, {}),
    "causes": ("triggers", False, {}),
}


def check_id(value: object, field: str = "id") -> str:
    """A canonical lower-case 36-character UUID.

    Raises:
        InvalidArgument: invalid_id.
    """
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise invalid(
            "invalid_id",
            f"{field} {value!r} is not a canonical lower-case UUID.",
            "Ids look like 0190c5e2-7a1b-7c3d-8e4f-0123456789ab.",
            field=field,
        )
    return value


def resolve_type(name: str) -> TypeInfo:
    """The registered type for a name (``schema`` is ContextFS's ``schema_def``).

    Raises:
        InvalidArgument: unknown_type, with the 24 names in ``details.allowed``.
    """
    info = TYPES.get(TYPE_ALIASES.get(name, name))
    if info is None:
        raise invalid(
            "unknown_type",
            f"Unknown memory type {name!r}.",
            "Call types to list the 24 types and their schemas.",
            allowed=list(TYPES),
        )
    return info


def validate_data(info: TypeInfo, data: object) -> dict[str, Any]:
    """Validate ``data`` against the type; defaults applied, ``None`` fields dropped.

    Raises:
        InvalidArgument: schema_violation with ``errors[{path, message}]``.
    """
    if not isinstance(data, dict):
        raise invalid(
            "schema_violation",
            f"data of a {info.name} must be a JSON object.",
            errors=[{"path": "data", "message": "must be an object"}],
        )
    try:
        model = info.model.model_validate(data)
    except ValidationError as error:
        errors = [
            {
                "path": ".".join(["data", *(str(part) for part in item["loc"])]),
                "message": item["msg"],
            }
            for item in error.errors()
        ]
        raise invalid(
            "schema_violation",
            f"data does not match the {info.name} schema: {errors[0]['path']}: "
            f"{errors[0]['message']}.",
            f"See memory://types/{info.name} for the schema.",
            errors=errors,
            type=info.name,
        ) from None
    dumped: dict[str, Any] = model.model_dump(mode="json", exclude_none=True)
    return dumped


def check_tags(tags: list[str] | None, limits: MemoryLimits) -> list[str]:
    """Lower-cased, validated, sorted and de-duplicated tags.

    Raises:
        InvalidArgument: invalid_tag.
    """
    if tags is None:
        return []
    if len(tags) > limits.tags_max:
        raise invalid(
            "invalid_tag",
            f"{len(tags)} tags given; at most {limits.tags_max} are allowed.",
            limit=limits.tags_max,
            size=len(tags),
        )
    lowered = [tag.lower() if isinstance(tag, str) else tag for tag in tags]
    for tag in lowered:
        if not isinstance(tag, str) or not _TAG.fullmatch(tag):
            raise invalid(
                "invalid_tag",
                f"Tag {tag!r} is not valid.",
                "Tags are 1-64 of a-z, 0-9, '_', '.', ':', '-', starting with a letter or digit.",
                tag=tag,
            )
    return sorted(set(lowered))


def check_namespace(namespace: str) -> str:
    """Raises: InvalidArgument: invalid_namespace."""
    if not isinstance(namespace, str) or not _NAMESPACE.fullmatch(namespace):
        raise invalid(
            "invalid_namespace",
            f"Namespace {namespace!r} is not valid.",
            "Use global, shared, agent:<id> or contract:<id>.",
            namespace=namespace,
        )
    return namespace


def check_actor(actor: str) -> str:
    """An actor is a vector-clock key. Raises: InvalidArgument: invalid_actor."""
    if not isinstance(actor, str) or not _ACTOR.fullmatch(actor):
        raise invalid(
            "invalid_actor",
            f"Actor {actor!r} is not valid.",
            "Actors are 1-128 of letters, digits and _ . : @ -.",
            actor=actor,
        )
    return actor


def check_clock(clock: object) -> dict[str, int]:
    """A vector clock given from outside (imports): actor keys, integer counters >= 0.

    Raises:
        InvalidArgument: invalid_clock.
    """
    if not isinstance(clock, dict) or not clock:
        raise invalid("invalid_clock", f"Vector clock {clock!r} must be a non-empty object.")
    for actor, counter in clock.items():
        if (
            not isinstance(actor, str)
            or not _ACTOR.fullmatch(actor)
            or isinstance(counter, bool)
            or not isinstance(counter, int)
            or counter < 0
        ):
            raise invalid(
                "invalid_clock",
                f"Vector clock entry {actor!r}: {counter!r} is not valid.",
                "Keys are actor ids, values integers >= 0.",
            )
    return {actor: counter for actor, counter in sorted(clock.items()) if counter}


def check_ttl(ttl_s: int, limits: MemoryLimits) -> int:
    """Raises: InvalidArgument: ttl_out_of_range."""
    if isinstance(ttl_s, bool) or not isinstance(ttl_s, int) or not 1 <= ttl_s <= limits.ttl_s_max:
        raise invalid(
            "ttl_out_of_range",
            f"ttl_s {ttl_s!r} is outside 1..{limits.ttl_s_max}.",
            min=1,
            max=limits.ttl_s_max,
        )
    return ttl_s


def normalize_relation(name: str, from_id: str, to_id: str) -> tuple[str, str, str, dict[str, str]]:
    """The canonical ``(from, to, relation, implied metadata)`` of a link request: inverse
    names flip the direction; symmetric relations are stored smaller id first.

    Raises:
        InvalidArgument: invalid_relation.
    """
    implied: dict[str, str] = {}
    relation = name
    if name in _RELATION_ALIASES:
        relation, flip, implied = _RELATION_ALIASES[name]
        if flip:
            from_id, to_id = to_id, from_id
    if relation not in RELATIONS:
        raise invalid(
            "invalid_relation",
            f"Unknown relation {name!r}.",
            f"Use one of: {', '.join(RELATIONS)}.",
            allowed=list(RELATIONS),
        )
    if relation in SYMMETRIC and to_id < from_id:
        from_id, to_id = to_id, from_id
    return from_id, to_id, relation, implied


def check_relations(relations: list[str] | None) -> list[str]:
    """A relation filter (default: all 13). Raises: InvalidArgument: invalid_relation."""
    if relations is None:
        return list(RELATIONS)
    for relation in relations:
        if relation not in RELATIONS:
            raise invalid(
                "invalid_relation",
                f"Unknown relation {relation!r} in the filter.",
                allowed=list(RELATIONS),
            )
    return sorted(set(relations))


class Payload:
    """A validated, hashed payload ready to store."""

    __slots__ = ("body", "data", "hash", "info", "summary", "tags", "text")

    def __init__(
        self,
        info: TypeInfo,
        data: dict[str, Any],
        tags: list[str],
        text: str | None,
        summary: str | None,
        limits: MemoryLimits,
    ) -> None:
        payload = payload_of(info.name, data, tags, text, summary)
        try:
            raw = canonical_bytes(payload)
        except ValueError as error:
            raise invalid(
                "schema_violation",
                f"The payload cannot be canonicalized: {error}.",
                errors=[{"path": "data", "message": str(error)}],
            ) from None
        if len(raw) > limits.content_bytes_max:
            raise invalid(
                "content_too_large",
                f"The canonical payload is {len(raw)} bytes; the limit is "
                f"{limits.content_bytes_max}.",
                "Store large bodies as an artifact with a uri.",
                limit=limits.content_bytes_max,
                size=len(raw),
            )
        self.info = info
        self.data: dict[str, Any] = payload["data"]
        self.tags: list[str] = payload["tags"]
        self.text: str | None = payload.get("text")
        self.summary: str | None = payload.get("summary")
        self.body = raw.decode()
        self.hash = content_hash(raw)


def build_payload(
    type_name: str,
    data: object,
    tags: list[str] | None,
    text: str | None,
    summary: str | None,
    limits: MemoryLimits,
) -> Payload:
    """Validate everything a payload is made of and hash it.

    Raises:
        InvalidArgument: unknown_type, schema_violation, invalid_tag, content_too_large.
    """
    info = resolve_type(type_name)
    checked = validate_data(info, data)
    return Payload(info, checked, check_tags(tags, limits), text, summary, limits)


def payload_from_body(body: str, limits: MemoryLimits) -> Payload:
    """Rebuild a stored payload from its canonical body."""
    document = json.loads(body)
    return Payload(
        resolve_type(document["type"]),
        document["data"],
        document["tags"],
        document.get("text"),
        document.get("summary"),
        limits,
    )


def merge_patch(target: object, patch: object) -> object:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def ensure(condition: bool, error: InvalidArgument) -> None:
    """Raise ``error`` unless ``condition`` holds (input checks, never invariants)."""
    if not condition:
        raise error
