"""The host's merged view of its children's tools, prompts, resources and templates.

- Tool and prompt names become ``<prefix><name>``. Public names stay within
  ``^[a-zA-Z0-9_-]{1,64}$`` (the strictest popular clients' rule): other characters become
  ``_`` and an over-long name is shortened with a hash suffix, so it stays unique.
- Resource URIs are global already (``memory://...``, ``file:///...``) and pass through as they
  are; only the resource *names* get the prefix. A read is routed by exact URI, then by the
  templates, then by the URI scheme when exactly one child serves that scheme.
- The same public name (or URI, or template) from two sources is a collision: at start-up an
  error naming both servers, later (a child changed its lists) a logged error, first one kept.
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
    "PUBLIC_NAME",
    "Catalog",
    "ChildCatalog",
    "CollisionError",
    "Routed",
    "build_catalog",
    "public_name",
]

logger = logging.getLogger(__name__)

PUBLIC_NAME: Final = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_NAME_LENGTH_MAX: Final = 64
_UNSAFE: Final = re.compile(r"[^a-zA-Z0-9_-]")
HOST_SOURCE: Final = "host"

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
    matcher: UriTemplate | None


@dataclass
class Catalog:
    tools: dict[str, Routed[types.Tool]] = field(default_factory=dict)
    prompts: dict[str, Routed[types.Prompt]] = field(default_factory=dict)
    resources: dict[str, Routed[types.Resource]] = field(default_factory=dict)
    templates: list[_Template] = field(default_factory=list)

    def route_uri(self, uri: str) -> str | None:
        """The child that serves ``uri``, or None."""
        exact = self.resources.get(uri)
        if exact is not None:
            return exact.source
        for entry in self.templates:
            if entry.matcher is not None and entry.matcher.match(uri) is not None:
                return entry.source
        scheme = uri.split(":", 1)[0]
        owners = {
            routed.source for key, routed in self.resources.items() if key.startswith(scheme + ":")
        } | {
            entry.source
            for entry in self.templates
            if entry.template.uri_template.startswith(scheme + ":")
        }
        return next(iter(owners)) if len(owners) == 1 else None

    def route_template(self, uri_template: str) -> str | None:
        for entry in self.templates:
            if entry.template.uri_template == uri_template:
                return entry.source
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
        CollisionError: ``strict`` and two sources offer the same name, URI or template.
    """
    catalog = Catalog()
    problems: list[str] = []
    for tool in host_tools:
        _claim(catalog.tools, tool.name, Routed(HOST_SOURCE, tool.name, tool), "tool", problems)
    for source, prefix, offered in children:
        for tool in offered.tools:
            name = public_name(prefix, tool.name)
            renamed = tool.model_copy(update={"name": name})
            _claim(catalog.tools, name, Routed(source, tool.name, renamed), "tool", problems)
        for prompt in offered.prompts:
            name = public_name(prefix, prompt.name)
            renamed_prompt = prompt.model_copy(update={"name": name})
            _claim(
                catalog.prompts,
                name,
                Routed(source, prompt.name, renamed_prompt),
                "prompt",
                problems,
            )
        for resource in offered.resources:
            uri = str(resource.uri)
            named = resource.model_copy(update={"name": prefix + resource.name})
            _claim(catalog.resources, uri, Routed(source, uri, named), "resource", problems)
        for template in offered.templates:
            _add_template(catalog, source, prefix, template, problems)
    if problems:
        if strict:
            raise CollisionError(" ".join(problems))
        for problem in problems:
            logger.error("catalog.collision", extra={"problem": problem})
    return catalog


def _add_template(
    catalog: Catalog,
    source: str,
    prefix: str,
    template: types.ResourceTemplate,
    problems: list[str],
) -> None:
    for entry in catalog.templates:
        if entry.template.uri_template == template.uri_template:
            problems.append(
                f"resource template {template.uri_template!r} is offered by both "
                f"{entry.source!r} and {source!r}."
            )
            return
    try:
        matcher: UriTemplate | None = UriTemplate.parse(template.uri_template)
    except InvalidUriTemplate:
        logger.warning(
            "catalog.bad_template", extra={"child": source, "template": template.uri_template}
        )
        matcher = None
    renamed = template.model_copy(update={"name": prefix + template.name})
    catalog.templates.append(_Template(source, renamed, matcher))
