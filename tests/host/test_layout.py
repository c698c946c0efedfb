"""The host layout: children, dependencies and prefixes are validated before anything starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from aios_host.config import AIOS_SERVERS, ChildSpec, HostLayout, builtin_layout, load_layout
from aios_shared.errors import InvalidArgument


def write(tmp_path: Path, text: str, name: str = "layout.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_children_start_after_everything_they_depend_on(tmp_path: Path) -> None:
    """Start order is a topological order of depends_on (DESIGN.md section 3)."""
    layout = load_layout(
        write(
            tmp_path,
            """
[[servers]]
name = "market"
command = ["m"]
depends_on = ["scheduler", "memory"]
[[servers]]
name = "scheduler"
command = ["s"]
depends_on = ["memory"]
[[servers]]
name = "memory"
command = ["x"]
""",
        )
    )
    order = [spec.name for spec in layout.start_order()]
    assert order == ["memory", "scheduler", "market"]


def test_a_dependency_cycle_is_rejected_with_the_cycle_named(tmp_path: Path) -> None:
    """A cycle can never start; the message walks it so the user can break it."""
    path = write(
        tmp_path,
        """
[[servers]]
name = "a"
command = ["a"]
depends_on = ["b"]
[[servers]]
name = "b"
command = ["b"]
depends_on = ["a"]
""",
    )
    with pytest.raises(
        InvalidArgument, match=r"dependency cycle between servers: (a -> b -> a|b -> a -> b)"
    ):
        load_layout(path)


def test_an_unknown_dependency_is_rejected_naming_it_and_the_known_servers(tmp_path: Path) -> None:
    path = write(tmp_path, '[[servers]]\nname = "a"\ncommand = ["a"]\ndepends_on = ["ghost"]\n')
    with pytest.raises(InvalidArgument, match="depends on unknown server\\(s\\) ghost; known: a"):
        load_layout(path)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        pytest.param(
            '[[servers]]\nname = "a"\n', "exactly one of 'command' or 'module'", id="no-command"
        ),
        pytest.param(
            '[[servers]]\nname = "a"\ncommand = ["x"]\nmodule = "y"\n',
            "exactly one of 'command' or 'module'",
            id="two-commands",
        ),
        pytest.param(
            '[[servers]]\nname = "my_server"\ncommand = ["x"]\n', "servers.0.name", id="underscore"
        ),
        pytest.param(
            '[[servers]]\nname = "a"\ncommand = ["x"]\n[[servers]]\nname = "a"\ncommand = ["y"]\n',
            "repeated: a",
            id="duplicate",
        ),
        pytest.param(
            '[[servers]]\nname = "a"\ncommand = ["x"]\nprefix = "a.b"\n',
            "prefix 'a.b'",
            id="bad-prefix",
        ),
        pytest.param(
            '[[servers]]\nname = "a"\ncommand = ["x"]\ncolour = 1\n', "colour", id="unknown-field"
        ),
        pytest.param(
            '[[servers]]\nname = "host"\ncommand = ["x"]\n', "reserved", id="reserved-name"
        ),
    ],
)
def test_a_malformed_layout_names_what_is_wrong(tmp_path: Path, text: str, problem: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        load_layout(write(tmp_path, text))
    assert problem in raised.value.message


def test_an_unreadable_or_unparsable_file_is_a_typed_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="Cannot read config file"):
        load_layout(tmp_path / "missing.toml")
    with pytest.raises(InvalidArgument, match="is not valid TOML"):
        load_layout(write(tmp_path, "[[servers]\n"))
    with pytest.raises(InvalidArgument, match="is not valid JSON"):
        load_layout(write(tmp_path, "{", name="layout.json"))


def test_json_layouts_work_like_toml(tmp_path: Path) -> None:
    layout = load_layout(
        write(tmp_path, '{"servers": [{"name": "a", "command": ["x"], "prefix": ""}]}', "l.json")
    )
    assert layout.servers[0].namespace == ""


def test_the_default_prefix_is_the_name_and_an_underscore() -> None:
    assert ChildSpec(name="memory", command=["x"]).namespace == "memory_"


def test_the_builtin_layout_holds_only_installed_servers_in_start_order() -> None:
    """Without a file the host composes the AIOS servers that exist in this environment."""
    layout = builtin_layout()
    known = [name for name, _ in AIOS_SERVERS]
    names = [spec.name for spec in layout.servers]
    assert names == [name for name in known if name in names]
    for spec in layout.servers:
        assert spec.transport == "http"
        assert spec.module == f"aios_{spec.name}"
        assert set(spec.depends_on) <= set(names)
    assert HostLayout.model_validate(layout.model_dump()) == layout
