"""The documentation stays true: every setting is in config.example.toml and in the README's table."""

from __future__ import annotations

import tomllib
from pathlib import Path

from pydantic import BaseModel

from stepup_bff.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]


def _keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys.extend(_keys(annotation, f"{prefix}{name}."))
        else:
            keys.append(prefix + name)
    return keys


def test_example_config_loads() -> None:
    settings = load_settings(ROOT / "config.example.toml")
    assert settings.public_url == "http://localhost:9000"


def test_every_setting_is_documented_in_the_example_config() -> None:
    text = (ROOT / "config.example.toml").read_text()
    data = tomllib.loads(text)
    for key in _keys(Settings):
        section, _, name = key.rpartition(".")
        present = name in (data.get(section, {}) if section else data)
        # Optional keys appear commented out, with their default.
        assert present or f"# {name} = " in text, f"{key} is not in config.example.toml"


def test_every_setting_is_in_the_readme_table() -> None:
    readme = (ROOT / "README.md").read_text()
    for key in _keys(Settings):
        env = "STEPUP_" + key.upper().replace(".", "__")
        assert f"| `{key}` | `{env}`" in readme, f"{key} is missing from the README's configuration table"
