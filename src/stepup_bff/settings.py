"""Configuration: a TOML file plus `STEPUP_*` environment variables (env wins), validated once at start-up.

Where the file comes from: `--config PATH`, else `$STEPUP_CONFIG`, else `./config.toml` if it exists, else none.
Nested keys use `__` in the environment: `[fusionauth] api_key` is `STEPUP_FUSIONAUTH__API_KEY`.
"""

from __future__ import annotations

import contextvars
import difflib
import ipaddress
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin
from urllib.parse import urlsplit
from uuid import UUID

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

ENV_PREFIX = "STEPUP_"
CONFIG_ENV = "STEPUP_CONFIG"
DEFAULT_CONFIG = Path("config.toml")
LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1"}


class ConfigError(Exception):
    """The configuration is missing or invalid; the message names the key and says how to fix it."""


def _origin(value: str) -> str:
    """An origin such as `https://app.example.com` (no path, no trailing slash)."""
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError("must be an origin without a path, e.g. https://app.example.com")
    # Serialised as browsers send `Origin` (RFC 6454 6.1): lower-case scheme and host, no default port. Written
    # any other way (`https://App.example.com:443`) it would never match, and every state-changing request would
    # be refused as cross-site.
    host = parts.hostname  # urlsplit lower-cases it
    if ":" in host:
        host = f"[{host}]"
    default_port = {"http": 80, "https": 443}[parts.scheme]
    port = "" if parts.port in (None, default_port) else f":{parts.port}"
    return f"{parts.scheme}://{host}{port}"


def _base_url(value: str) -> str:
    """A base URL: http(s), any path prefix, no trailing slash."""
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL")
    if parts.query or parts.fragment:
        raise ValueError("must not have a query or fragment")
    return value.strip().rstrip("/")


def is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


Origin = Annotated[str, AfterValidator(_origin)]
BaseUrl = Annotated[str, AfterValidator(_base_url)]
Seconds = Annotated[int, Field(gt=0)]


class _Section(BaseModel):
    # A misspelt key is an error, not a silently ignored default.
    model_config = ConfigDict(extra="forbid", frozen=True)


class FusionAuthSettings(_Section):
    url: BaseUrl  # back-channel: where the BFF reaches FusionAuth (e.g. http://fusionauth:9011 in compose)
    public_url: BaseUrl | None = None  # browser-facing: where people reach FusionAuth; defaults to `url`
    api_key: SecretStr
    application_id: UUID  # = the OAuth client_id
    client_secret: SecretStr
    tenant_id: UUID | None = None
    timeout: Annotated[float, Field(gt=0, le=60)] = 5.0  # seconds, per read/write/pool wait
    connect_timeout: Annotated[float, Field(gt=0, le=60)] = 2.0  # seconds
    # Signed webhooks (POST /webhooks/fusionauth): the `kid` of the one Key Master key FusionAuth signs them with (a key
    # of its own, never the token-signing key). Unset: every webhook is refused (401).
    webhook_key_id: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    # Set when that key is an HMAC key (HS256): its secret, shared out of band (FusionAuth never publishes HMAC keys).
    # Unset: the key is RSA (RS256) and its public half is read from FusionAuth's JWKS.
    webhook_secret: SecretStr | None = None
    # Where FusionAuth sends the webhook, as FusionAuth reaches the BFF (`doctor` checks it); default
    # <public_url>/webhooks/fusionauth.
    webhook_url: BaseUrl | None = None

    @property
    def browser_url(self) -> str:
        return self.public_url or self.url

    @field_validator("api_key", "client_secret")
    @classmethod
    def _not_blank(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _strong_webhook_secret(cls, value: SecretStr | None) -> SecretStr | None:
        # HS256 with a short secret is guessable offline from any one signed webhook.
        if value is not None and len(value.get_secret_value()) < 32:
            raise ValueError("needs at least 32 characters")
        return value


class SessionSettings(_Section):
    # The first key signs; every key verifies. Rotate by putting a new key first and keeping the old one
    # until the longest session (absolute_timeout) has passed.
    secret_keys: Annotated[list[SecretStr], Field(min_length=1)]
    idle_timeout: Seconds = 1800  # 30 min: ASVS 4.0.3 3.3.2 level 2
    absolute_timeout: Seconds = 43200  # 12 h: ASVS 4.0.3 3.3.2 / NIST 800-63B rev. 3 AAL2
    # FusionAuth unreachable (or failing) when a session's access token is due for refresh: ordinary requests go on
    # for this many seconds after the first failed try, then the session ends. A step-up needs FusionAuth anyway.
    refresh_grace: Seconds = 300

    @field_validator("secret_keys")
    @classmethod
    def _strong_keys(cls, keys: list[SecretStr]) -> list[SecretStr]:
        for key in keys:
            # 32 characters of token_urlsafe carry ~190 bits; shorter keys are guessable offline from a cookie.
            if len(key.get_secret_value()) < 32:
                raise ValueError(
                    "each key needs at least 32 characters; make one with "
                    "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
                )
        return keys

    @model_validator(mode="after")
    def _idle_within_absolute(self) -> SessionSettings:
        if self.idle_timeout > self.absolute_timeout:
            raise ValueError("idle_timeout must not be longer than absolute_timeout")
        return self


SecondFactorMethod = Literal["authenticator", "email", "sms"]
# An action's name: a fixed vocabulary written in the code (`require_step_up(action=...)`), safe to put in a header,
# a metric label or a log line as it is.
ACTION_NAME = r"^[a-z][a-z0-9_]{0,47}$"
# The built-in actions' policies, which a [step_up.actions.<name>] table changes key by key: setting one key of
# send_telegram must not silently drop the binding the others give it.
# add_factor and remove_factor (a person's own second factors, stepup/factors.py) are bound too: the step-up says
# "adding an authenticator app" or "removing the authenticator app Phone", and authorizes that change once.
BUILTIN_ACTIONS: dict[str, dict[str, Any]] = {
    "send_telegram": {"bind_transaction": True},
    "add_factor": {"bind_transaction": True},
    "remove_factor": {"bind_transaction": True},
}


class ActionPolicy(_Section):
    """What one privileged action demands of a step-up. Unset keys fall back to [step_up]'s."""

    # Seconds a completed second factor counts for this action (at most step_up.max_age: an action may ask for a
    # fresher second factor, never a staler one).
    max_age: Seconds | None = None
    # true: each step-up authorizes one request of this action. A bound action is always single-use.
    single_use: bool | None = None
    # true: the step-up confirms one transaction (the request's fields that matter) and authorizes exactly that one.
    bind_transaction: bool = False
    # The methods offered for this action's step-up (none: every method of the user).
    methods: Annotated[list[SecondFactorMethod], Field(min_length=1)] | None = None

    @model_validator(mode="after")
    def _bound_is_single_use(self) -> ActionPolicy:
        if self.bind_transaction and self.single_use is False:
            raise ValueError(
                "a bound action (bind_transaction = true) authorizes one request: single_use cannot be false"
            )
        return self


class StepUpSettings(_Section):
    max_age: Seconds = 300  # how long a completed second factor counts as fresh
    single_use: bool = False  # true: each step-up authorizes exactly one privileged request
    # Wrong codes per challenge before it is discarded: one fewer than the kickstart tenant's failed-authentication
    # lockout (tooManyAttempts 5), so the person is asked to start again before FusionAuth locks the account.
    max_attempts: Seconds = 4
    max_failures: Seconds = 10  # wrong codes per user per failure_window before step-up is blocked
    failure_window: Seconds = 900  # seconds (15 min)
    # Wrong codes in a row, across windows, before step-up is locked for the account until support resets it
    # (NIST 800-63B 5.2.2: at most 100 consecutive failed attempts). A success resets the count.
    max_consecutive_failures: Seconds = 100
    resend_cooldown: Seconds = 30  # seconds between sends of a code
    max_sends: Seconds = 3  # sends per challenge
    max_starts: Seconds = 10  # challenges (and authenticator enrolments) a user may start per failure_window
    # How long a challenge lives: FusionAuth's twoFactorIdTimeToLiveInSeconds (tenant setting, default 300).
    challenge_ttl: Seconds = 300
    # Per-action policies, by the name a route gives its guard; a route with no name (or an undeclared one) gets the
    # defaults above. Built-in: send_telegram, bound to its transaction.
    actions: dict[Annotated[str, Field(pattern=ACTION_NAME)], ActionPolicy] = Field(
        default_factory=lambda: {name: ActionPolicy(**policy) for name, policy in BUILTIN_ACTIONS.items()}
    )

    @field_validator("actions", mode="before")
    @classmethod
    def _over_the_builtins(cls, value: Any) -> Any:
        if not isinstance(value, Mapping):
            return value  # pydantic says what is wrong with it
        merged: dict[str, Any] = {name: dict(policy) for name, policy in BUILTIN_ACTIONS.items()}
        for name, policy in value.items():
            given = policy.model_dump(exclude_unset=True) if isinstance(policy, BaseModel) else policy
            merged[name] = {**merged.get(name, {}), **given} if isinstance(given, Mapping) else given
        return merged

    @model_validator(mode="after")
    def _actions_within_max_age(self) -> StepUpSettings:
        for name, policy in self.actions.items():
            if policy.max_age is not None and policy.max_age > self.max_age:
                raise ValueError(f"actions.{name}.max_age must not be longer than step_up.max_age")
        return self


class EnrolmentSettings(_Section):
    """Second factors people add themselves (stepup/factors.py): an authenticator app."""

    # Adding a factor needs a sign-in (a password typed) at most this many seconds ago, proven by the ID token's
    # auth_time (hosted page) or by the Login API (native sign-in): whoever holds a stolen session must not be able
    # to add their own authenticator.
    max_auth_age: Seconds = 300
    # The name authenticator apps show beside the account (the otpauth URI's issuer). No ":" (the label's separator).
    issuer: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[^:]+$")] = "Singing Telegrams"


STORE_SCHEMES = ("sqlite:///", "redis://", "rediss://", "unix://")
DATABASE_SCHEMES = ("sqlite:///", "postgresql://", "postgres://")
Timeout = Annotated[float, Field(gt=0, le=60)]


class LoginSettings(_Section):
    # true: the SPA may sign people in with its own form through POST /auth/native/login (FusionAuth's Login API);
    # the hosted page stays. Off by default: the API key then also needs POST /api/login.
    native: bool = False
    # Failed native sign-ins allowed per login id, and per client address, within failure_window; then 429.
    max_failures_per_login_id: Seconds = 10
    max_failures_per_address: Seconds = 100
    failure_window: Seconds = 900  # seconds (15 min)


def _scheme_check(schemes: tuple[str, ...]) -> Any:
    def check(value: str) -> str:
        if not value.startswith(schemes):
            # The value itself is not repeated: a URL may carry a password.
            raise ValueError("must start with " + ", ".join(schemes[:-1]) + " or " + schemes[-1])
        return value

    return AfterValidator(check)


class StorageSettings(_Section):
    """Server-side state: session records, sign-ins in progress, challenges, counters, locks, grants."""

    # sqlite:///relative/path or sqlite:////absolute/path (one machine); redis://[:password@]host:port/db,
    # rediss://... (TLS) or unix:///path/to/redis.sock?db=0 (several machines share one Redis).
    url: Annotated[str, _scheme_check(STORE_SCHEMES)] = "sqlite:///data/stepup-bff.sqlite3"
    # Put before every key, so several deployments can share one Redis (`{` and `}` would make it a hash tag).
    prefix: Annotated[str, Field(max_length=64, pattern=r"^[^\s{}]*$")] = "stepup:"
    timeout: Timeout = 1.0  # seconds to wait for Redis to answer a command
    connect_timeout: Timeout = 1.0  # seconds to wait for a connection to Redis
    max_connections: Annotated[int, Field(ge=1, le=10000)] = 64  # Redis connections per worker process


class DatabaseSettings(_Section):
    """Durable records (telegrams): what must never be lost, and is shared by every replica."""

    # sqlite:///relative/path or sqlite:////absolute/path (one machine; may be the store's file);
    # postgresql://user:password@host:5432/dbname (several machines; libpq's URL, ?sslmode=verify-full etc.).
    url: Annotated[str, _scheme_check(DATABASE_SCHEMES)] = "sqlite:///data/stepup-bff.sqlite3"
    timeout: Timeout = 5.0  # seconds a statement may run, and to wait for a pooled connection
    connect_timeout: Timeout = 2.0  # seconds to wait for a new connection
    pool_size: Annotated[int, Field(ge=1, le=1000)] = 10  # PostgreSQL connections per worker process


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 9000
    # Worker processes of `serve`; each has its own event loop and connections, all share the store and database.
    workers: Annotated[int, Field(ge=1, le=64)] = 1
    # Proxies whose X-Forwarded-For/-Proto we believe (uvicorn's forwarded_allow_ips): the load balancer's address.
    forwarded_allow_ips: str = "127.0.0.1"


class MetricsSettings(_Section):
    # Prometheus metrics on a listener of their own, never on the public one. Off unless a port is set.
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    # Loopback by default: only a scraper on this machine (or in this container's network namespace) reaches it.
    host: str = "127.0.0.1"


_config_file: contextvars.ContextVar[Path | None] = contextvars.ContextVar("stepup_config_file", default=None)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    public_url: Origin = "http://localhost:9000"  # where browsers reach the BFF
    fusionauth: FusionAuthSettings
    session: SessionSettings
    step_up: StepUpSettings = StepUpSettings()
    enrolment: EnrolmentSettings = EnrolmentSettings()
    login: LoginSettings = LoginSettings()
    storage: StorageSettings = StorageSettings()
    database: DatabaseSettings = DatabaseSettings()
    server: ServerSettings = ServerSettings()
    metrics: MetricsSettings = MetricsSettings()
    frontend_dir: Path | None = None  # defaults to the packaged single-page app
    log_level: str = "info"
    log_format: Literal["text", "json"] = "text"
    # One line per request on stdout. On by default; turn off when the load balancer's log says it already.
    access_log: bool = True

    @field_validator("public_url")
    @classmethod
    def _secure_unless_loopback(cls, value: str) -> str:
        parts = urlsplit(value)
        # Cookies without Secure are only acceptable where nothing crosses a network.
        if parts.scheme == "http" and not is_loopback(parts.hostname):
            raise ValueError("must use https:// (plain http:// is only allowed for localhost)")
        return value

    @model_validator(mode="after")
    def _metrics_apart_from_the_app(self) -> Settings:
        if self.metrics.port is not None and self.metrics.port == self.server.port:
            raise ValueError("metrics.port must differ from server.port: metrics are never served on the public port")
        return self

    @property
    def cookie_secure(self) -> bool:
        return self.public_url.startswith("https://")

    @property
    def callback_url(self) -> str:
        return f"{self.public_url}/auth/callback"

    @property
    def webhook_url(self) -> str:
        """Where FusionAuth sends its events."""
        return self.fusionauth.webhook_url or f"{self.public_url}/webhooks/fusionauth"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: tuple[PydanticBaseSettingsSource, ...] = (init_settings, env_settings)
        config_file = _config_file.get()
        if config_file is not None:
            sources += (TomlConfigSettingsSource(settings_cls, toml_file=config_file),)
        return sources


def resolve_config_file(explicit: Path | None, environ: dict[str, str] | os._Environ[str]) -> Path | None:
    if explicit is not None:
        path = explicit
    elif environ.get(CONFIG_ENV):
        path = Path(environ[CONFIG_ENV])
    elif DEFAULT_CONFIG.is_file():
        return DEFAULT_CONFIG
    else:
        return None
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    return path


def _env_name(location: tuple[int | str, ...]) -> str:
    return ENV_PREFIX + "__".join(str(part).upper() for part in location if isinstance(part, str))


def _required_fields(location: tuple[int | str, ...]) -> list[str]:
    """For a missing section, its required keys, so the message names them rather than the section."""
    model: type[BaseModel] = Settings
    for part in location:
        field = model.model_fields.get(str(part))
        annotation = field.annotation if field else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return [name for name, field in model.model_fields.items() if field.is_required()]


_NAME_PATTERN = "[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*"  # an entry's name in an environment variable (no "__" in it)
NAMED = "*"  # in a setting path: the name of one entry of a table of tables ([step_up.actions.<name>])


def _table_of_tables(annotation: Any) -> type[BaseModel] | None:
    """The entry model of a `dict[str, Model]` setting (a TOML table of tables such as [step_up.actions.<name>])."""
    if get_origin(annotation) is dict:
        entry = get_args(annotation)[1]
        if isinstance(entry, type) and issubclass(entry, BaseModel):
            return entry
    return None


def _setting_paths(model: type[BaseModel] = Settings, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every setting, and every section (a section may be given whole, as JSON in the environment). An entry of a
    table of tables is named by NAMED, which stands for any name."""
    for name, field in model.model_fields.items():
        yield (*prefix, name)
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            yield from _setting_paths(field.annotation, (*prefix, name))
        elif (entry := _table_of_tables(field.annotation)) is not None:
            yield (*prefix, name, NAMED)
            yield from _setting_paths(entry, (*prefix, name, NAMED))


def _closest(name: str, candidates: list[str]) -> str | None:
    found = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    return found[0] if found else None


def _unknown_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """Each STEPUP_* variable that names no setting, with a message. pydantic-settings reads only the names it knows,
    so without this a misspelt section or top-level name (STEPUP_SESION__IDLE_TIMEOUT) would be ignored in silence
    and the server would start on the default."""
    paths = list(_setting_paths())
    known = {_env_name(path): path for path in paths if NAMED not in path}
    # A named entry's variables (STEPUP_STEP_UP__ACTIONS__SEND_TELEGRAM__MAX_AGE): any name in its place.
    named = [
        re.compile("__".join(_NAME_PATTERN if part == NAMED else re.escape(str(part).upper()) for part in path))
        for path in paths
        if NAMED in path
    ]
    suffixes = [name.removeprefix(ENV_PREFIX) for name in known]
    problems = {}
    for name in sorted(environ):
        upper = name.upper()  # pydantic-settings matches names case-insensitively
        if not upper.startswith(ENV_PREFIX) or upper == CONFIG_ENV or upper in known:
            continue
        if any(pattern.fullmatch(upper.removeprefix(ENV_PREFIX)) for pattern in named):
            continue
        # Compared without the prefix every name shares, so that it does not make unrelated names look alike.
        hint = _closest(upper.removeprefix(ENV_PREFIX), suffixes)
        problems[upper] = f"  {name}: is not a known setting" + (
            f"; did you mean {ENV_PREFIX}{hint}?" if hint else " (config.example.toml lists every setting)"
        )
    return problems


def _known_keys(location: tuple[int | str, ...]) -> list[str]:
    """The keys of the section that holds `location`'s last part."""
    model: type[BaseModel] = Settings
    parts = iter(location[:-1])
    for part in parts:
        field = model.model_fields.get(str(part))
        if field is None:
            return []
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            model = field.annotation
        elif (entry := _table_of_tables(field.annotation)) is not None and next(parts, None) is not None:
            model = entry  # the next part is the entry's name
        else:
            return []
    return list(model.model_fields)


def _describe(error: ValidationError, skip_env: frozenset[str] = frozenset()) -> list[str]:
    lines = []
    for problem in error.errors():
        location = tuple(problem["loc"])
        message = problem["msg"].removeprefix("Value error, ")
        if problem["type"] == "missing":
            message = "is required"
            children = _required_fields(location)
            if children:
                for child in children:
                    key = ".".join([*map(str, location), child])
                    env = _env_name((*location, child))
                    lines.append(f"  {key}: is required (TOML key {key!r} or env {env})")
                continue
        elif problem["type"] == "extra_forbidden":
            if _env_name(location) in skip_env:
                continue  # already reported, with its hint, as an unknown environment variable
            message = "is not a known setting"
            hint = _closest(str(location[-1]), _known_keys(location)) if location else None
            if hint is not None:
                message += f"; did you mean {'.'.join([*map(str, location[:-1]), hint])}?"
        key = ".".join(str(part) for part in location) or "(root)"
        # Only the key and the reason: the rejected value may be a secret.
        lines.append(f"  {key}: {message} (TOML key {key!r} or env {_env_name(location)})")
    return lines


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Read the TOML file and the environment; raise ConfigError with one readable message."""
    path = resolve_config_file(config_file, os.environ)
    source = f" (from {path} and the environment)" if path else " (from the environment; no config file)"
    unknown = _unknown_environment(os.environ)
    token = _config_file.set(path)
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        lines = [*unknown.values(), *_describe(exc, frozenset(unknown))]
        raise ConfigError(f"invalid configuration{source}:\n" + "\n".join(lines)) from None
    except (OSError, ValueError) as exc:  # unreadable file or TOML syntax error
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    finally:
        _config_file.reset(token)
    if unknown:
        raise ConfigError(f"invalid configuration{source}:\n" + "\n".join(unknown.values()))
    return settings
