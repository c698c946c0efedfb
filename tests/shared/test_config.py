"""Settings layer as documented: defaults < config file < AIOS_* environment < flags."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict

from aios_shared.config import ServerSettings, load_settings
from aios_shared.errors import InvalidArgument


class Limits(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    queue_depth_max: int = 10
    timeout_s: float = 1.0


class ExampleSettings(ServerSettings):
    limits: Limits = Limits()
    backend: str = "sqlite"


def test_each_layer_overrides_the_one_below_field_by_field(tmp_path: Path) -> None:
    config = tmp_path / "aios.toml"
    config.write_text('backend = "neo4j"\nport = 1000\n[limits]\nqueue_depth_max = 20\n')
    settings = load_settings(
        ExampleSettings,
        config_file=config,
        environ={"AIOS_PORT": "2000", "AIOS_LIMITS__TIMEOUT_S": "2.5", "OTHER": "x"},
        flags={"port": 3000, "host": None},
    )
    assert settings.backend == "neo4j"  # file over default
    assert settings.limits == Limits(queue_depth_max=20, timeout_s=2.5)  # env merges into file
    assert settings.port == 3000  # flag over env
    assert settings.host == "127.0.0.1"  # an unset flag hides nothing


def test_environment_values_parse_as_json_when_they_can() -> None:
    settings = load_settings(
        ExampleSettings,
        environ={"AIOS_ALLOWED_HOSTS": '["example.org:*"]', "AIOS_BACKEND": "neo4j"},
    )
    assert settings.allowed_hosts == ["example.org:*"]
    assert settings.backend == "neo4j"


def test_json_config_files_work_like_toml(tmp_path: Path) -> None:
    config = tmp_path / "aios.json"
    config.write_text('{"log_level": "debug"}')
    assert load_settings(ExampleSettings, config_file=config, environ={}).log_level == "debug"


@pytest.mark.parametrize(
    ("environ", "problem"),
    [
        ({"AIOS_PORT": "not-a-port"}, "port:"),
        ({"AIOS_PORT": "70000"}, "port:"),
        ({"AIOS_LIMITS__QUEUE_DEPTH_MAX": '"many"'}, "limits.queue_depth_max"),
        ({"AIOS_LOG_LEVEL": "loud"}, "log_level"),
    ],
)
def test_a_bad_value_names_the_field_and_where_to_fix_it(
    environ: dict[str, str], problem: str
) -> None:
    with pytest.raises(InvalidArgument) as raised:
        load_settings(ExampleSettings, environ=environ)
    assert problem in raised.value.message
    assert "AIOS_* environment" in raised.value.for_caller()


def test_an_unknown_field_in_a_file_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "aios.toml"
    config.write_text("colour = 'blue'\n")
    with pytest.raises(InvalidArgument, match="colour"):
        load_settings(ExampleSettings, config_file=config, environ={})


def test_home_follows_aios_home() -> None:
    assert load_settings(ExampleSettings, environ={"AIOS_HOME": "/srv/aios"}).home == Path(
        "/srv/aios"
    )
