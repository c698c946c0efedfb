"""The merged catalog: prefixed, client-safe names; collisions name both servers; routing."""

from __future__ import annotations

import mcp_types as types
import pytest

from aios_host.catalog import (
    PUBLIC_NAME,
    ChildCatalog,
    CollisionError,
    ResourceRoute,
    build_catalog,
    public_name,
)


def tool(name: str) -> types.Tool:
    return types.Tool(name=name, description="d", input_schema={"type": "object"})


def test_names_get_the_prefix() -> None:
    catalog = build_catalog(
        [], [("memory", "memory_", ChildCatalog(tools=[tool("save")]))], strict=True
    )
    routed = catalog.tools["memory_save"]
    assert (routed.source, routed.original_name, routed.item.name) == (
        "memory",
        "save",
        "memory_save",
    )


@pytest.mark.parametrize(
    "name", ["read.file", "a/b c", "x" * 200, "ünïcode", "get-sum", "a:b"], ids=repr
)
def test_every_public_name_fits_the_strictest_client_rule(name: str) -> None:
    """^[a-zA-Z0-9_-]{1,64}$ (Claude Desktop), whatever the child calls its tool."""
    public = public_name("everything_", name)
    assert PUBLIC_NAME.fullmatch(public), public


def test_long_names_stay_distinct_after_shortening() -> None:
    assert public_name("p_", "a" * 100 + "1") != public_name("p_", "a" * 100 + "2")


def test_an_empty_prefix_keeps_names_as_they_are() -> None:
    catalog = build_catalog([], [("c", "", ChildCatalog(tools=[tool("echo")]))], strict=True)
    assert list(catalog.tools) == ["echo"]


def test_a_collision_is_an_error_naming_both_servers() -> None:
    with pytest.raises(CollisionError, match="'echo' is offered by both 'a' and 'b'"):
        build_catalog(
            [],
            [
                ("a", "", ChildCatalog(tools=[tool("echo")])),
                ("b", "", ChildCatalog(tools=[tool("echo")])),
            ],
            strict=True,
        )


def test_a_collision_with_a_host_tool_is_an_error() -> None:
    with pytest.raises(CollisionError, match="'host_status' is offered by both 'host' and 'host'"):
        build_catalog(
            [tool("host_status")],
            [("host", "host_", ChildCatalog(tools=[tool("status")]))],
            strict=True,
        )


def test_after_start_a_collision_keeps_the_first_and_does_not_raise() -> None:
    catalog = build_catalog(
        [],
        [
            ("a", "", ChildCatalog(tools=[tool("echo")])),
            ("b", "", ChildCatalog(tools=[tool("echo")])),
        ],
        strict=False,
    )
    assert catalog.tools["echo"].source == "a"


def test_resources_route_by_exact_uri_then_template_then_scheme() -> None:
    first = ChildCatalog(
        resources=[types.Resource(uri="memory://state/digest", name="digest")],
        templates=[types.ResourceTemplate(uri_template="memory://items/{id}", name="item")],
    )
    second = ChildCatalog(resources=[types.Resource(uri="file:///srv/a.txt", name="a")])
    catalog = build_catalog(
        [], [("memory", "memory_", first), ("files", "files_", second)], strict=True
    )
    assert catalog.route_uri("memory://state/digest") == ResourceRoute(
        "memory", "memory://state/digest"
    )
    assert catalog.route_uri("memory://items/42") == ResourceRoute("memory", "memory://items/42")
    assert catalog.route_uri("file:///srv/other.txt") == ResourceRoute(
        "files", "file:///srv/other.txt"
    )
    assert catalog.route_uri("https://example.invalid/") is None
    assert catalog.resources["memory://state/digest"].item.name == "memory_digest"
    assert catalog.public_templates()[0].name == "memory_item"


def test_two_instances_of_one_server_list_their_resources_under_explicit_addresses() -> None:
    """The same URI from two children is no error: each is listed as aios://<child>/<uri>, and
    reads of that address reach the right child with the child's own URI."""
    offered = ChildCatalog(
        resources=[types.Resource(uri="test://static-text", name="static")],
        templates=[types.ResourceTemplate(uri_template="test://template/{id}/data", name="t")],
    )
    unique = ChildCatalog(resources=[types.Resource(uri="only://here", name="only")])
    catalog = build_catalog(
        [], [("one", "one_", offered), ("two", "two_", offered), ("three", "", unique)], strict=True
    )
    assert sorted(catalog.resources) == [
        "aios://one/test://static-text",
        "aios://two/test://static-text",
        "only://here",
    ]
    assert catalog.route_uri("aios://two/test://static-text") == ResourceRoute(
        "two", "test://static-text"
    )
    assert catalog.route_uri("aios://one/test://template/7/data") == ResourceRoute(
        "one", "test://template/7/data"
    )
    assert catalog.route_uri("aios://three/only://here") == ResourceRoute("three", "only://here")
    assert catalog.route_uri("aios://ghost/x://y") is None
    assert catalog.route_uri("test://static-text") is None
    assert [t.uri_template for t in catalog.public_templates()] == [
        "aios://one/test://template/{id}/data",
        "aios://two/test://template/{id}/data",
    ]
