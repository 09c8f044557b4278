"""The documentation stays true: every setting is in config.example.toml and in the README's table."""

from __future__ import annotations

import re
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


def test_every_readme_screenshot_is_taken_by_a_browser_test() -> None:
    """The README's pictures come from the browser suite (tests/browser/conftest.py's README_SCREENSHOTS, `make
    screenshots`), never from a hand-made capture that the SPA's look has left behind: each image the README shows
    from docs/ is one of them, and a test takes each."""
    shown = set(re.findall(r"\]\((docs/[^)]+\.png)\)", (ROOT / "README.md").read_text()))
    conftest = (ROOT / "tests" / "browser" / "conftest.py").read_text()
    mapping = dict(re.findall(r'"(readme-[a-z-]+)": ROOT / "docs" / "([^"]+\.png)"', conftest))
    assert shown == {f"docs/{file}" for file in mapping.values()}
    taken = {
        name
        for path in (ROOT / "tests" / "browser").glob("test_*.py")
        for name in re.findall(r'screenshot\(page, "(readme-[a-z-]+)"\)', path.read_text())
    }
    assert set(mapping) <= taken, set(mapping) - taken
    for file in mapping.values():
        assert (ROOT / "docs" / file).is_file()
