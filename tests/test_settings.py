"""Configuration: TOML plus environment (env wins), and one clear message naming the key on any mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from stepup_bff.cli import main
from stepup_bff.settings import ConfigError, load_settings

VALID_TOML = """
public_url = "http://localhost:9000"

[fusionauth]
url = "http://localhost:9011"
api_key = "toml-api-key"
application_id = "e9fdb985-9173-4e01-9d73-ac2d60d1dc8e"
client_secret = "toml-client-secret"

[session]
secret_keys = ["0123456789abcdef0123456789abcdef"]
"""


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(VALID_TOML)
    return path


def test_reads_toml_with_defaults(config_file: Path) -> None:
    settings = load_settings(config_file)
    assert settings.fusionauth.api_key.get_secret_value() == "toml-api-key"
    assert settings.fusionauth.browser_url == "http://localhost:9011"  # public_url defaults to url
    assert settings.session.idle_timeout == 1800
    assert settings.session.absolute_timeout == 43200
    assert settings.step_up.max_age == 300
    assert settings.storage.url.startswith("sqlite:///")
    assert settings.cookie_secure is False


def test_environment_wins_over_toml(config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEPUP_FUSIONAUTH__API_KEY", "env-api-key")
    monkeypatch.setenv("STEPUP_STEP_UP__MAX_AGE", "120")
    monkeypatch.setenv(
        "STEPUP_SESSION__SECRET_KEYS", '["env-key-0123456789abcdef0123456789", "old-key-0123456789abcdef01234567"]'
    )
    settings = load_settings(config_file)
    assert settings.fusionauth.api_key.get_secret_value() == "env-api-key"
    assert settings.fusionauth.client_secret.get_secret_value() == "toml-client-secret"
    assert settings.step_up.max_age == 120
    assert len(settings.session.secret_keys) == 2


def test_config_file_from_environment_variable(config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEPUP_CONFIG", str(config_file))
    assert load_settings().fusionauth.api_key.get_secret_value() == "toml-api-key"


def test_config_toml_in_working_directory(config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(config_file.parent)
    assert load_settings().fusionauth.api_key.get_secret_value() == "toml-api-key"


@pytest.mark.parametrize(
    ("toml", "env", "expected"),
    [
        (VALID_TOML.replace('api_key = "toml-api-key"\n', ""), {}, "fusionauth.api_key: is required"),
        (VALID_TOML, {"STEPUP_FUSIONAUTH__URL": "not a url"}, "fusionauth.url: must be an http:// or https:// URL"),
        (VALID_TOML, {"STEPUP_PUBLIC_URL": "http://app.example.com"}, "public_url: must use https://"),
        (VALID_TOML.replace("0123456789abcdef0123456789abcdef", "short"), {}, "session.secret_keys: each key needs"),
        (VALID_TOML, {"STEPUP_SESSION__IDLE_TIMEOUT": "50000"}, "idle_timeout must not be longer"),
        (VALID_TOML + "\n[step_up]\nmax_agee = 5\n", {}, "step_up.max_agee: is not a known setting"),
        (VALID_TOML.replace("e9fdb985-9173-4e01-9d73-ac2d60d1dc8e", "app"), {}, "fusionauth.application_id"),
        ("this is [not toml", {}, "cannot read config file"),
    ],
)
def test_bad_configuration_names_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, toml: str, env: dict[str, str], expected: str
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(toml)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert expected in str(caught.value)


def test_missing_everything_lists_each_required_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    for key in ("fusionauth.url", "fusionauth.api_key", "fusionauth.application_id", "session.secret_keys"):
        assert key in message
    assert "STEPUP_FUSIONAUTH__API_KEY" in message


def test_missing_config_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")


def test_secrets_never_appear_in_messages_or_repr(config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings(config_file)
    assert "toml-api-key" not in repr(settings) and "toml-client-secret" not in str(settings)
    # A bad value that is a secret is not echoed back either.
    monkeypatch.setenv("STEPUP_SESSION__SECRET_KEYS", '["hunter2-too-short"]')
    with pytest.raises(ConfigError) as caught:
        load_settings(config_file)
    assert "hunter2" not in str(caught.value)


def test_cli_prints_one_clear_message_and_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("stepup-bff: invalid configuration")
    assert "Traceback" not in err
    assert "fusionauth.api_key: is required" in err


@pytest.mark.parametrize(
    ("name", "hint"),
    [
        ("STEPUP_SESION__IDLE_TIMEOUT", "did you mean STEPUP_SESSION__IDLE_TIMEOUT?"),  # the section misspelt
        ("STEPUP_LOG_LEVL", "did you mean STEPUP_LOG_LEVEL?"),  # a top-level name misspelt
        ("STEPUP_SESSION__IDLE_TIMOUT", "did you mean STEPUP_SESSION__IDLE_TIMEOUT?"),  # the key misspelt
        ("STEPUP_FUSIONAUTH_API_KEY", "did you mean STEPUP_FUSIONAUTH__API_KEY?"),  # one underscore too few
        ("stepup_metrics__prot", "did you mean STEPUP_METRICS__PORT?"),  # read case-insensitively, so checked so
        ("STEPUP_TELEMETRY", "config.example.toml lists every setting"),  # nothing close
    ],
)
def test_unknown_environment_variables_are_refused_with_the_closest_setting(
    config_file: Path, monkeypatch: pytest.MonkeyPatch, name: str, hint: str
) -> None:
    monkeypatch.setenv(name, "300")
    with pytest.raises(ConfigError) as caught:
        load_settings(config_file)
    message = str(caught.value)
    assert f"{name}: is not a known setting" in message
    assert hint in message
    assert "300" not in message  # values are never echoed: they may be secrets
    assert message.count("is not a known setting") == 1  # reported once, not again by the section's own check


def test_config_and_every_real_setting_name_are_accepted(config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEPUP_CONFIG", str(config_file))
    monkeypatch.setenv("STEPUP_LOG_FORMAT", "json")
    monkeypatch.setenv("STEPUP_METRICS__PORT", "9100")
    monkeypatch.setenv("STEPUP_STEP_UP", '{"max_age": 60}')  # a whole section as JSON is a known name too
    settings = load_settings()
    assert (settings.log_format, settings.metrics.port, settings.step_up.max_age) == ("json", 9100, 60)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("\n[step_up]\nmax_agee = 5\n", "step_up.max_agee: is not a known setting; did you mean step_up.max_age?"),
        ("\n[sesion]\nidle_timeout = 60\n", "sesion: is not a known setting; did you mean session?"),
        ('log_levl = "debug"\n', "log_levl: is not a known setting; did you mean log_level?"),
        ("\n[metrics]\nprot = 9100\n", "metrics.prot: is not a known setting; did you mean metrics.port?"),
    ],
)
def test_unknown_toml_keys_get_the_closest_name(tmp_path: Path, extra: str, expected: str) -> None:
    path = tmp_path / "config.toml"
    # Top-level keys must come before the first [section] in TOML.
    path.write_text(extra + VALID_TOML if not extra.startswith("\n") else VALID_TOML + extra)
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert expected in str(caught.value)


def test_a_misspelt_variable_stops_the_cli_with_exit_code_2(
    config_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("STEPUP_SESION__IDLE_TIMEOUT", "300")
    assert main(["serve", "--config", str(config_file)]) == 2
    err = capsys.readouterr().err
    assert "STEPUP_SESION__IDLE_TIMEOUT: is not a known setting; did you mean STEPUP_SESSION__IDLE_TIMEOUT?" in err
    assert "Traceback" not in err


def test_metrics_are_never_on_the_public_port(config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEPUP_METRICS__PORT", "9000")
    with pytest.raises(ConfigError, match="metrics.port must differ from server.port"):
        load_settings(config_file)


def test_store_and_database_urls_are_checked_without_echoing_them(
    config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_settings(config_file)
    assert settings.database.url == settings.storage.url  # by default one SQLite file holds both
    assert settings.storage.prefix == "stepup:"
    for name, value in {
        "STEPUP_STORAGE__URL": "memcached://:hunter2@cache:11211",
        "STEPUP_DATABASE__URL": "mongodb://admin:hunter2@db/stepup",
        "STEPUP_STORAGE__PREFIX": "{all-in-one-slot}:",
    }.items():
        monkeypatch.setenv(name, value)
        with pytest.raises(ConfigError) as raised:
            load_settings(config_file)
        assert "hunter2" not in str(raised.value)
        assert name.removeprefix("STEPUP_").lower().replace("__", ".") in str(raised.value)
        monkeypatch.delenv(name)
    for url in ("redis://:pw@redis:6379/0", "rediss://redis:6380/1", "unix:///run/redis.sock?db=0"):
        monkeypatch.setenv("STEPUP_STORAGE__URL", url)
        assert load_settings(config_file).storage.url == url
    monkeypatch.setenv("STEPUP_DATABASE__URL", "postgresql://stepup:pw@db:5432/stepup")
    assert load_settings(config_file).database.url.startswith("postgresql://")


@pytest.mark.parametrize(
    ("written", "origin"),
    [
        ("https://App.Example.com", "https://app.example.com"),
        ("https://app.example.com:443/", "https://app.example.com"),
        ("HTTPS://app.example.com:8443", "https://app.example.com:8443"),
        ("http://LOCALHOST:80", "http://localhost"),
        ("http://[::1]:9000", "http://[::1]:9000"),
    ],
)
def test_public_url_is_kept_as_browsers_send_origin(
    config_file: Path, monkeypatch: pytest.MonkeyPatch, written: str, origin: str
) -> None:
    # Otherwise an upper-case host or an explicit default port never equals the browser's Origin header, and every
    # state-changing request is refused as cross-site.
    monkeypatch.setenv("STEPUP_PUBLIC_URL", written)
    assert load_settings(config_file).public_url == origin


def test_public_url_with_credentials_is_refused(config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEPUP_PUBLIC_URL", "https://user:pw@app.example.com")
    with pytest.raises(ConfigError, match="public_url: must be an origin"):
        load_settings(config_file)
