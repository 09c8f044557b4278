"""FusionAuth's error responses, as exceptions with one handler.

FusionAuth answers errors in three shapes, and clients rely on the exact one (docs/fusionauth.md §1, §6.2):

    FusionAuthError                 any status, usually an EMPTY body (401, 404, 421 ...)
    ├── Unauthorized                401, empty: missing/invalid API key or JWT
    ├── NotFound                    404, empty
    ├── Gone                        410, empty: the user has expired
    ├── Locked                      423, empty: the user is locked (deactivated)
    ├── InvalidCode                 421, empty: a wrong two-factor code
    ├── LoginPrevented              409, {"actions": [...]}: a user action that prevents login
    ├── ValidationFailed            400, Errors JSON {"fieldErrors": {field: [...]}, "generalErrors": [...]}
    └── OAuthError                  400/401, {"error", "error_reason", "error_description"}

The official Python client calls ``response.json()`` on every 400, so a 400 is never sent without a JSON body.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response


class FusionAuthError(Exception):
    status_code: int = 500

    def __init__(self, status_code: int | None = None, body: Any = None) -> None:
        super().__init__(f"HTTP {status_code or self.status_code}")
        if status_code is not None:
            self.status_code = status_code
        self.body = body

    def to_response(self) -> Response:
        if self.body is None:
            return Response(status_code=self.status_code)
        return JSONResponse(self.body, status_code=self.status_code)


class Unauthorized(FusionAuthError):
    status_code = 401


class NotFound(FusionAuthError):
    status_code = 404


class Gone(FusionAuthError):
    status_code = 410


class Locked(FusionAuthError):
    status_code = 423


class InvalidCode(FusionAuthError):
    status_code = 421


class LoginPrevented(FusionAuthError):
    status_code = 409

    def __init__(self, actions: list[dict[str, Any]]) -> None:
        super().__init__(body={"actions": actions})


class ValidationFailed(FusionAuthError):
    """400 with FusionAuth's Errors JSON; the docs' ``fieldErrors`` is an object keyed by field (docs/fusionauth.md
    §1)."""

    status_code = 400

    def __init__(
        self,
        field_errors: dict[str, list[tuple[str, str]]] | None = None,
        general_errors: list[tuple[str, str]] | None = None,
    ) -> None:
        body: dict[str, Any] = {}
        if field_errors:
            body["fieldErrors"] = {
                field: [{"code": code, "message": message} for code, message in errors]
                for field, errors in field_errors.items()
            }
        if general_errors:
            body["generalErrors"] = [{"code": code, "message": message} for code, message in general_errors]
        super().__init__(body=body)

    @classmethod
    def field(cls, field: str, code: str, message: str) -> ValidationFailed:
        return cls(field_errors={field: [(f"[{code}]{field}", message)]})

    @classmethod
    def general(cls, code: str, message: str) -> ValidationFailed:
        return cls(general_errors=[(code, message)])


class OAuthError(FusionAuthError):
    status_code = 400

    def __init__(self, error: str, reason: str, description: str, status_code: int = 400) -> None:
        self.error = error
        self.reason = reason
        self.description = description
        super().__init__(
            status_code=status_code,
            body={"error": error, "error_reason": reason, "error_description": description},
        )


def install_error_handlers(app: FastAPI) -> None:
    async def _fusionauth_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, FusionAuthError)  # noqa: S101 - registered for this class only
        return exc.to_response()

    app.add_exception_handler(FusionAuthError, _fusionauth_error)
