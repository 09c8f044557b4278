"""API-key authentication and endpoint permissions, as FusionAuth applies them (docs/fusionauth.md §1).

The key is the raw ``Authorization`` header value (no ``Bearer``). A key with ``permissions.endpoints`` may call only
the listed endpoint+method pairs, e.g. ``{"/api/two-factor/start": ["POST"]}``; anything else is a 401 with an empty
body, exactly like a wrong key. Endpoints are FusionAuth's API URIs without path ids: ``DELETE /api/jwt/refresh/{id}``
is the ``/api/jwt/refresh`` endpoint.
"""

from __future__ import annotations

from fusionauth_dev.directory import ApiKey, Directory
from fusionauth_dev.errors import Unauthorized, ValidationFailed

TENANT_HEADER = "X-FusionAuth-TenantId"


def bearer_token(authorization: str | None) -> str | None:
    if authorization and authorization[:7].lower() == "bearer ":
        return authorization[7:].strip() or None
    return None


def find_api_key(directory: Directory, authorization: str | None) -> ApiKey | None:
    if not authorization or bearer_token(authorization) is not None:
        return None
    return directory.api_key_by_value(authorization.strip())


def require_api_key(directory: Directory, authorization: str | None, endpoint: str, method: str) -> ApiKey:
    api_key = find_api_key(directory, authorization)
    if api_key is None or not api_key.allows(endpoint, method):
        raise Unauthorized()
    return api_key


def optional_api_key(directory: Directory, authorization: str | None, endpoint: str, method: str) -> ApiKey | None:
    """No header: None. A header that is not a valid, permitted key: 401 (a wrong key is never ignored)."""
    if not authorization:
        return None
    return require_api_key(directory, authorization, endpoint, method)


def check_key_tenant(api_key: ApiKey | None, tenant_id: str) -> None:
    # A tenant-scoped key sees nothing outside its tenant.
    if api_key is not None and api_key.tenant_id is not None and api_key.tenant_id != tenant_id:
        raise Unauthorized()


def header_tenant(directory: Directory, value: str | None) -> str | None:
    if not value:
        return None
    if value not in directory.tenants:
        raise ValidationFailed.field("tenantId", "invalid", f"The tenant [{value}] does not exist.")
    return value
