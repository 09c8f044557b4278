"""What a dev command needs to know about the seeded server: ids, secrets, keys and demo users.

Computed from the live state, so it also reflects changes made through the API after start.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from fusionauth_dev import totp
from fusionauth_dev.directory import ADMIN_APPLICATION_ID, Directory


@dataclass(frozen=True)
class DemoMethod:
    id: str
    method: str  # "authenticator", "email" or "sms"
    name: str | None = None
    email: str | None = None
    mobile_phone: str | None = None
    secret: str | None = None  # base64, as FusionAuth stores it (authenticator only)

    @property
    def secret_base32(self) -> str | None:
        """The form an authenticator app takes (``otpauth://`` URIs, QR codes)."""
        return None if self.secret is None else totp.secret_base32(self.secret)

    def code_at(self, at: float) -> str:
        if self.secret is None:
            raise ValueError(f"the {self.method} method {self.id} has no TOTP secret")
        return totp.code_at(self.secret, at)


@dataclass(frozen=True)
class DemoUser:
    id: str
    email: str | None
    username: str | None
    password: str | None  # as given to kickstart; None for users created otherwise
    methods: tuple[DemoMethod, ...]
    application_ids: tuple[str, ...]

    @property
    def login_id(self) -> str:
        return self.email or self.username or self.id

    @property
    def totp_secret(self) -> str | None:
        return next((m.secret for m in self.methods if m.method == "authenticator"), None)

    def method(self, kind: str) -> DemoMethod | None:
        return next((m for m in self.methods if m.method == kind), None)


@dataclass(frozen=True)
class SeededApplication:
    id: str
    name: str
    tenant_id: str
    client_secret: str
    redirect_urls: tuple[str, ...]
    logout_url: str | None
    client_authentication_policy: str
    pkce_policy: str


@dataclass(frozen=True)
class SeededApiKey:
    id: str
    key: str
    description: str | None
    endpoints: Mapping[str, tuple[str, ...]] | None  # None: unrestricted
    key_manager: bool

    def allows(self, endpoint: str, method: str) -> bool:
        return self.endpoints is None or method.upper() in self.endpoints.get(endpoint, ())


@dataclass(frozen=True)
class Seed:
    tenant_id: str
    issuer: str
    applications: tuple[SeededApplication, ...]
    api_keys: tuple[SeededApiKey, ...]
    users: tuple[DemoUser, ...]
    skipped_requests: tuple[str, ...] = ()

    @property
    def application(self) -> SeededApplication:
        """The one seeded application (FusionAuth's own admin application does not count)."""
        if len(self.applications) != 1:
            names = [app.name for app in self.applications]
            raise LookupError(f"expected exactly one seeded application, found {names}; use application_by_id()")
        return self.applications[0]

    def application_by_id(self, application_id: str) -> SeededApplication:
        for application in self.applications:
            if application.id == application_id:
                return application
        raise LookupError(f"no application {application_id}")

    @property
    def admin_api_key(self) -> SeededApiKey:
        """Kickstart's first key: global, unrestricted."""
        if not self.api_keys:
            raise LookupError("no API keys were seeded")
        return self.api_keys[0]

    @property
    def bff_api_key(self) -> SeededApiKey:
        """The least-privileged key that may start a two-factor challenge (what the BFF calls)."""
        return self.api_key_allowing("/api/two-factor/start", "POST")

    def api_key_allowing(self, endpoint: str, method: str) -> SeededApiKey:
        candidates = [key for key in self.api_keys if key.allows(endpoint, method)]
        if not candidates:
            raise LookupError(f"no seeded API key may call {method} {endpoint}")
        restricted = [key for key in candidates if key.endpoints is not None]
        if restricted:
            return min(restricted, key=lambda key: len(key.endpoints or {}))
        return candidates[0]

    def user(self, login_id: str) -> DemoUser:
        for user in self.users:
            if login_id.lower() in {(user.email or "").lower(), (user.username or "").lower(), user.id}:
                return user
        raise LookupError(f"no seeded user {login_id}")

    def describe(self) -> str:
        """A plain-text summary for a console banner (secrets included: it is for a developer's own terminal)."""
        lines = [f"issuer:        {self.issuer}", f"tenant id:     {self.tenant_id}"]
        for application in self.applications:
            lines += [
                f"application:   {application.name} ({application.id})",
                f"  client secret: {application.client_secret}",
                f"  redirect URLs: {', '.join(application.redirect_urls) or '(none)'}",
            ]
        for api_key in self.api_keys:
            scope = (
                "all endpoints"
                if api_key.endpoints is None
                else ", ".join(f"{' '.join(methods)} {path}" for path, methods in api_key.endpoints.items())
            )
            lines.append(f"API key:       {api_key.key} ({api_key.description or api_key.id}; {scope})")
        for user in self.users:
            methods = ", ".join(
                m.method + (f" {m.email or m.mobile_phone}" if m.email or m.mobile_phone else "") for m in user.methods
            )
            password = user.password or "(password not known)"
            lines.append(f"user:          {user.login_id} / {password}; {methods or 'no second factor'}")
        return "\n".join(lines)


def build_seed(directory: Directory, passwords: Mapping[str, str], skipped: tuple[str, ...] = ()) -> Seed:
    tenant = directory.default_tenant
    applications = tuple(
        SeededApplication(
            id=app.id,
            name=app.name,
            tenant_id=app.tenant_id,
            client_secret=app.client_secret,
            redirect_urls=tuple(app.redirect_urls),
            logout_url=app.logout_url,
            client_authentication_policy=app.client_authentication_policy,
            pkce_policy=app.pkce_policy,
        )
        for app in directory.applications.values()
        if app.id != ADMIN_APPLICATION_ID
    )
    api_keys = tuple(
        SeededApiKey(
            id=key.id,
            key=key.key,
            description=(key.data.get("metaData") or {}).get("attributes", {}).get("description"),
            endpoints=None
            if key.endpoints is None
            else {path: tuple(sorted(methods)) for path, methods in key.endpoints.items()},
            key_manager=key.key_manager,
        )
        for key in directory.api_keys.values()
    )
    users = tuple(
        DemoUser(
            id=user.id,
            email=user.email,
            username=user.username,
            password=passwords.get(user.id),
            methods=tuple(
                DemoMethod(
                    id=str(method["id"]),
                    method=str(method["method"]),
                    name=method.get("name"),
                    email=method.get("email"),
                    mobile_phone=method.get("mobilePhone"),
                    secret=user.secrets.get(str(method["id"])),
                )
                for method in user.methods
            ),
            application_ids=tuple(str(r["applicationId"]) for r in user.data.get("registrations", [])),
        )
        for user in directory.users.values()
    )
    return Seed(
        tenant_id=tenant.id,
        issuer=tenant.issuer,
        applications=applications,
        api_keys=api_keys,
        users=users,
        skipped_requests=skipped,
    )
