"""CSRF, content types, security headers, error shapes."""

from __future__ import annotations

import pytest
import respx
from fastapi.testclient import TestClient

from conftest import JSON_HEADERS, PUBLIC_URL


def test_state_changing_request_without_csrf_header_is_refused(signed_in: TestClient) -> None:
    response = signed_in.post("/auth/logout")
    assert response.status_code == 403
    assert response.json()["error"] == "csrf_rejected"
    assert signed_in.get("/api/session").json()["authenticated"] is True  # nothing happened


@pytest.mark.parametrize(
    "headers",
    [
        {"X-CSRF": "1", "Origin": "https://evil.example"},
        {"X-CSRF": "1", "Origin": "http://localhost:9001"},
        {"X-CSRF": "1", "Sec-Fetch-Site": "cross-site"},
        {"X-CSRF": "1", "Sec-Fetch-Site": "same-site"},
        {"X-CSRF": "0", "Origin": PUBLIC_URL},
    ],
)
def test_cross_site_requests_are_refused(signed_in: TestClient, headers: dict[str, str]) -> None:
    response = signed_in.post("/auth/logout", headers=headers)
    assert response.status_code == 403
    assert response.json()["error"] == "csrf_rejected"
    assert signed_in.get("/api/session").json()["authenticated"] is True


def test_same_origin_fetch_metadata_is_accepted(signed_in: TestClient) -> None:
    headers = {**JSON_HEADERS, "Sec-Fetch-Site": "same-origin"}
    assert signed_in.post("/auth/logout", headers=headers).status_code == 200


def test_non_json_bodies_are_refused(signed_in: TestClient) -> None:
    response = signed_in.post(
        "/auth/logout", headers={**JSON_HEADERS, "Content-Type": "application/x-www-form-urlencoded"}, content="a=b"
    )
    assert response.status_code == 415
    assert response.json()["error"] == "unsupported_media_type"


def test_security_headers_on_every_response(client: TestClient) -> None:
    for path in ("/", "/api/session", "/nope"):
        response = client.get(path)
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
    assert "strict-transport-security" not in client.get("/").headers  # plain-http localhost


def test_private_paths_are_not_cached(client: TestClient) -> None:
    assert client.get("/api/session").headers["cache-control"] == "no-store"
    assert client.get("/auth/login").headers["cache-control"] == "no-store"
    assert client.get("/").headers.get("cache-control") != "no-store"


def test_unknown_api_path_is_json(client: TestClient) -> None:
    response = client.get("/api/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def test_spa_is_served(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert '<script type="module" src="/app.js">' in response.text


def test_unexpected_exception_is_a_json_500_without_traceback(
    app_factory: object, settings: object, fusionauth: respx.MockRouter
) -> None:
    from fastapi.testclient import TestClient as Client

    from stepup_bff.app import create_app

    app = create_app(settings)  # type: ignore[arg-type]

    @app.get("/api/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals")

    app.router.routes.insert(0, app.router.routes.pop())  # before the SPA mount
    with Client(app, raise_server_exceptions=False, base_url=PUBLIC_URL) as client:
        response = client.get("/api/boom")
    assert response.status_code == 500
    assert response.json() == {"error": "internal_error", "error_description": "Something went wrong on our side."}
    assert "secret internals" not in response.text


def test_healthz(client: TestClient, fusionauth: respx.MockRouter) -> None:
    fusionauth["discovery"].mock(side_effect=AssertionError("liveness must not call FusionAuth"))
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_large_bodies_are_refused_with_413(signed_in: TestClient) -> None:
    response = signed_in.post(
        "/api/telegrams",
        content=b'{"recipient": "' + b"a" * 20000 + b'"}',
        headers={**JSON_HEADERS, "Content-Type": "application/json"},
    )
    # The edge answers before routing, in the same JSON shape as every other error.
    assert response.status_code == 413
    assert response.json() == {
        "error": "request_too_large",
        "error_description": "Request bodies are limited to 16 KiB.",
    }
