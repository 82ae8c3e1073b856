"""JSON error bodies for every error a service can answer with.

The frontend flattens every value of an error object into toast messages, so bodies are
objects whose values are strings or lists of strings: `{"detail": "..."}` for general errors
and `{"<field>": ["..."]}` for validation errors (HTTP 400, as the API contract expects).
"""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy.exc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger(__name__)

_STATUS_DETAIL = {
    400: "Bad request.",
    401: "Authentication credentials were not provided or are invalid.",
    403: "You do not have permission to perform this action.",
    404: "Not found.",
    405: "Method not allowed.",
    413: "Request body too large.",
    415: "Unsupported media type.",
    429: "Too many requests.",
}


class FieldErrors(Exception):
    """Raised by service code for input that passed parsing but breaks a business rule."""

    def __init__(self, errors: dict[str, list[str]], status_code: int = 400) -> None:
        super().__init__(errors)
        self.errors = errors
        self.status_code = status_code


def field_errors_from_validation(exc: RequestValidationError) -> dict[str, Any]:
    errors: dict[str, list[str]] = {}
    for err in exc.errors():
        loc = [
            str(p)
            for p in err.get("loc", ())
            if p not in ("body", "query", "path", "header", "cookie")
        ]
        if err.get("type") == "json_invalid":
            return {"detail": "Malformed JSON body."}
        if err.get("type") == "model_attributes_type" or (
            not loc and err.get("type") == "dict_type"
        ):
            return {"detail": "Request body must be a JSON object."}
        key = loc[0] if loc else "detail"
        msg = err.get("msg", "Invalid value.")
        if err.get("type") == "missing":
            msg = "This field is required."
        errors.setdefault(key, []).append(msg)
    if "detail" in errors:
        errors["detail"] = " ".join(errors["detail"])  # type: ignore[assignment]
    return errors or {"detail": "Invalid input."}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail
        if not isinstance(detail, dict):
            if not isinstance(detail, str) or detail in ("Not Found", "Method Not Allowed"):
                detail = _STATUS_DETAIL.get(exc.status_code, str(detail))
            detail = {"detail": detail}
        return JSONResponse(
            detail, status_code=exc.status_code, headers=getattr(exc, "headers", None)
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(field_errors_from_validation(exc), status_code=400)

    @app.exception_handler(FieldErrors)
    async def field_errors(request: Request, exc: FieldErrors) -> JSONResponse:
        return JSONResponse(exc.errors, status_code=exc.status_code)

    @app.exception_handler(sqlalchemy.exc.TimeoutError)
    async def pool_exhausted(request: Request, exc: sqlalchemy.exc.TimeoutError) -> JSONResponse:
        # Every database connection stayed busy past the pool timeout: overload, not a bug.
        logger.warning("database pool exhausted on %s %s", request.method, request.url.path)
        return JSONResponse(
            {"detail": "Service temporarily unavailable. Please try again shortly."},
            status_code=503,
            headers={"Retry-After": "2"},
        )

    @app.exception_handler(Exception)
    async def unhandled(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "Internal server error."}, status_code=500)
