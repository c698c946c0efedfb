"""The host's merged view of its children's tools, prompts, resources and templates.

- Tool and prompt names become ``<prefix><name>``. Public names stay within
  ``^[a-zA-Z0-9_-]{1,64}$`` (the strictest popular clients' rule): other characters become
  ``_`` and an over-long name is shortened with a hash suffix, so it stays unique.
- Resource URIs are global already (``memory://...``, ``file:///...``) and pass through as they
  are; only the resource *names* get the prefix. When two children offer the same URI (or
  template) — two instances of one server, say — each is listed as ``aios://<child>/<uri>``
  instead, and ``aios://<child>/<uri>`` addresses any child's resource explicitly. A read is
  routed by that form, then by exact URI, then by the templates, then by the URI scheme when
  exactly one child serves that scheme.
- The same public tool or prompt name from two sources is a collision: at start-up an error
  naming both servers, later (a child changed its lists) a logged error, first one kept.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final, Generic, TypeVar

import mcp_types as types
from mcp.shared.uri_template import InvalidUriTemplate, UriTemplate

__all__ = [
    "EXPLICIT_SCHEME",
    "PUBLIC_NAME",
    "Catalog",
    "ChildCatalog",
    "CollisionError",
    "ResourceRoute",
    "Routed",
    "build_catalog",
    "explicit_uri",
    "public_name",
]

logger = logging.getLogger(__name__)

PUBLIC_NAME: Final = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_NAME_LENGTH_MAX: Final = 64
_UNSAFE: Final = re.compile(r"[^a-zA-Z0-9_-]")
HOST_SOURCE: Final = "host"
EXPLICIT_SCHEME: Final = "aios://"

ItemT = TypeVar("ItemT")


class CollisionError(ValueError):
    """Two sources offer the same public name; the message names both."""


def public_name(prefix: str, name: str) -> str:
    """``prefix + name`` made safe for every client's tool-name rule."""
    candidate = prefix + _UNSAFE.sub("_", name)
    if len(candidate) > _NAME_LENGTH_MAX:
        digest = hashlib.sha256(name.encode()).hexdigest()[:8]
        candidate = f"{candidate[: _NAME_LENGTH_MAX - 9]}_{digest}"
    if not candidate:
        candidate = "_"
    assert PUBLIC_NAME.fullmatch(candidate), candidate
    return candidate


@dataclass(frozen=True)
class ChildCatalog:
    """What one child offers, as the child names it."""

    tools: Sequence[types.Tool] = ()
    prompts: Sequence[types.Prompt] = ()
    resources: Sequence[types.Resource] = ()
    templates: Sequence[types.ResourceTemplate] = ()


@dataclass(frozen=True)
class Routed(Generic[ItemT]):
    """A public item and where calls to it go."""

    source: str
    original_name: str
    item: ItemT


@dataclass(frozen=True)
class _Template:
    source: str
    template: types.ResourceTemplate
    child_template: str
    matcher: UriTemplate | None


@dataclass(frozen=True)
class ResourceRoute:
    """Where a public resource URI goes: the child and the URI as the child knows it."""

    source: str
    child_uri: str


def explicit_uri(source: str, uri: str) -> str:
    """The explicit address of a child's resource, used when URIs collide."""
    return f"{EXPLICIT_SCHEME}{source}/{uri}"


@dataclass
class Catalog:
    tools: dict[str, Routed[types.Tool]] = field(default_factory=dict)
    prompts: dict[str, Routed[types.Prompt]] = field(default_factory=dict)
    resources: dict[str, Routed[types.Resource]] = field(default_factory=dict)
    templates: list[_Template] = field(default_factory=list)
    sources: frozenset[str] = frozenset()

    def route_uri(self, uri: str) -> ResourceRoute | None:
        """The child that serves ``uri`` (and the URI it knows), or None."""
        if uri.startswith(EXPLICIT_SCHEME):
            source, _, child_uri = uri.removeprefix(EXPLICIT_SCHEME).partition("/")
            return ResourceRoute(source, child_uri) if source in self.sources else None
        exact = self.resources.get(uri)
        if exact is not None:
            return ResourceRoute(exact.source, exact.original_name)
        for entry in self.templates:
            if entry.matcher is not None and entry.matcher.match(uri) is not None:
                child_uri = uri
                if entry.child_template != entry.template.uri_template:
                    child_uri = uri.removeprefix(explicit_uri(entry.source, ""))
                return ResourceRoute(entry.source, child_uri)
        scheme = uri.split(":", 1)[0] + ":"
        owners = {routed.source for key, routed in self.resources.items() if key.startswith(scheme)}
        owners |= {e.source for e in self.templates if e.template.uri_template.startswith(scheme)}
        return ResourceRoute(next(iter(owners)), uri) if len(owners) == 1 else None

    def route_template(self, uri_template: str) -> ResourceRoute | None:
        for entry in self.templates:
            if entry.template.uri_template == uri_template:
                return ResourceRoute(entry.source, entry.child_template)
        return None

    def public_templates(self) -> list[types.ResourceTemplate]:
        return [entry.template for entry in self.templates]


def _claim(
    table: dict[str, Routed[ItemT]],
    key: str,
    routed: Routed[ItemT],
    kind: str,
    problems: list[str],
) -> None:
    existing = table.get(key)
    if existing is not None:
        problems.append(
            f"{kind} {key!r} is offered by both {existing.source!r} and {routed.source!r}; "
            "give one of them another prefix in the host layout."
        )
        return
    table[key] = routed


def build_catalog(
    host_tools: Iterable[types.Tool],
    children: Iterable[tuple[str, str, ChildCatalog]],
    *,
    strict: bool,
) -> Catalog:
    """Merge the host's own tools and each ``(child name, prefix, catalog)``.

    Raises:
        CollisionError: ``strict`` and two sources offer the same tool or prompt name.
    """
    offered = list(children)
    catalog = Catalog(sources=frozenset(source for source, _, _ in offered))
    problems: list[str] = []
    for tool in host_tools:
        _claim(catalog.tools, tool.name, Routed(HOST_SOURCE, tool.name, tool), "tool", problems)
    uri_owners = _count(str(r.uri) for _, _, c in offered for r in c.resources)
    template_owners = _count(t.uri_template for _, _, c in offered for t in c.templates)
    for source, prefix, child in offered:
        for tool in child.tools:
            name = public_name(prefix, tool.name)
            renamed = tool.model_copy(update={"name": name})
            _claim(catalog.tools, name, Routed(source, tool.name, renamed), "tool", problems)
        for prompt in child.prompts:
            name = public_name(prefix, prompt.name)
            renamed_prompt = prompt.model_copy(update={"name": name})
            _claim(
                catalog.prompts,
                name,
                Routed(source, prompt.name, renamed_prompt),
                "prompt",
                problems,
            )
        for resource in child.resources:
            uri = str(resource.uri)
            public = uri if uri_owners[uri] == 1 else explicit_uri(source, uri)
            named = resource.model_copy(update={"name": prefix + resource.name, "uri": public})
            catalog.resources[public] = Routed(source, uri, named)
        for template in child.templates:
            shared = template_owners[template.uri_template] > 1
            _add_template(catalog, source, prefix, template, shared)
    if problems:
        if strict:
            raise CollisionError(" ".join(problems))
        for problem in problems:
            logger.error("catalog.collision", extra={"problem": problem})
    return catalog


def _count(values: Iterable[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return counts


def _add_template(
    catalog: Catalog, source: str, prefix: str, template: types.ResourceTemplate, shared: bool
) -> None:
    public = explicit_uri(source, template.uri_template) if shared else template.uri_template
    try:
        matcher: UriTemplate | None = UriTemplate.parse(public)
    except InvalidUriTemplate:
        logger.warning("catalog.bad_template", extra={"child": source, "template": public})
        matcher = None
    renamed = template.model_copy(update={"name": prefix + template.name, "uri_template": public})
    catalog.templates.append(_Template(source, renamed, template.uri_template, matcher))
