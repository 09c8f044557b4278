"""What a sign-in established, as the tokens it leads to record it: who, for which application and tenant, with which
scopes, when and how (docs/fusionauth.md §6.6: ``sub``, ``aud``/``applicationId``, ``tid``, ``scope``, ``auth_time``,
``authenticationType``). Refresh tokens keep the same facts so that a refresh can issue tokens that say them again.
"""

from __future__ import annotations

from dataclasses import dataclass

from fusionauth_dev.directory import Application, Directory, RefreshToken, Tenant, User


@dataclass(frozen=True)
class Authentication:
    user: User
    tenant: Tenant
    application: Application | None
    scopes: tuple[str, ...]
    auth_time: int
    authentication_type: str

    @classmethod
    def refreshed(
        cls, directory: Directory, refresh: RefreshToken, scopes: tuple[str, ...] | None = None
    ) -> Authentication:
        """The authentication a refresh token carries on, optionally narrowed to ``scopes``.

        ``auth_time`` stays that of the first sign-in and ``authenticationType`` becomes ``REFRESH_TOKEN``
        (docs/fusionauth.md §6.6).
        """
        return cls(
            user=directory.users[refresh.user_id],
            tenant=directory.tenant_of(refresh.tenant_id),
            application=directory.applications.get(refresh.application_id or ""),
            scopes=refresh.scopes if scopes is None else scopes,
            auth_time=refresh.auth_time,
            authentication_type="REFRESH_TOKEN",
        )
