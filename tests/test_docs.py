"""The documentation stays true: every setting is in config.example.toml and in the README's table."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, get_args, get_origin

from pydantic import BaseModel

from stepup_bff.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]


NAMED = "<name>"  # a table of tables ([step_up.actions.<name>]): its keys, whatever the entry's name


def _keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys.extend(_keys(annotation, f"{prefix}{name}."))
        elif get_origin(annotation) is dict and issubclass(entry := get_args(annotation)[1], BaseModel):
            keys.extend(_keys(entry, f"{prefix}{name}.{NAMED}."))
        else:
            keys.append(prefix + name)
    return keys


def _section(data: dict[str, Any], key: str) -> tuple[list[dict[str, Any]], str]:
    """The tables of `data` that may hold `key`'s last part (every entry of a table of tables), and that part."""
    *path, name = key.split(".")
    tables = [data]
    for part in path:
        if part == NAMED:
            tables = [entry for table in tables for entry in table.values() if isinstance(entry, dict)]
        else:
            tables = [table.get(part, {}) for table in tables]
    return tables, name


def test_example_config_loads() -> None:
    settings = load_settings(ROOT / "config.example.toml")
    assert settings.public_url == "http://localhost:9000"


def test_every_setting_is_documented_in_the_example_config() -> None:
    text = (ROOT / "config.example.toml").read_text()
    data = tomllib.loads(text)
    for key in _keys(Settings):
        tables, name = _section(data, key)
        present = any(name in table for table in tables)
        # Optional keys appear commented out, with their default.
        assert present or f"# {name} = " in text, f"{key} is not in config.example.toml"


def test_every_setting_is_in_the_readme_table() -> None:
    readme = (ROOT / "README.md").read_text()
    for key in _keys(Settings):
        env = "STEPUP_" + key.upper().replace(".", "__")  # step_up.actions.<name>.x: STEPUP_STEP_UP__ACTIONS__<NAME>__X
        assert f"| `{key}` | `{env}`" in readme, f"{key} is missing from the README's configuration table"
