"""JSON error responses: the one place that maps errors to HTTP status codes and bodies.

The app factory installs these handlers on every service. Domain errors
(`videoflix_shared.errors`) get their status from `HTTP_STATUS` and their body from
`error_body`; FastAPI's own errors (unknown path, wrong method, request validation) and
infrastructure failures are mapped here too, so no route or service picks a status itself.

The frontend flattens every value of an error object into toast messages, so bodies are
objects whose values are strings or lists of strings: `{"detail": "..."}` for general errors
and `{"<field>": ["..."]}` for input errors (HTTP 400, as the API contract expects).
"""

from __future__ import annotations

import logging

import sqlalchemy.exc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from videoflix_shared.errors import (
    Conflict,
    DomainError,
    Forbidden,
    InvalidInput,
    NotFound,
    RateLimited,
    TooLarge,
    Unauthorized,
    Unavailable,
    Unsupported,
)

logger = logging.getLogger(__name__)

ErrorBody = dict[str, str | list[str]]

HTTP_STATUS: dict[type[DomainError], int] = {
    InvalidInput: 400,
    Unauthorized: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    TooLarge: 413,
    Unsupported: 415,
    RateLimited: 429,
    Unavailable: 503,
}

# Bodies for Starlette's own HTTP errors, whose default texts ("Not Found") we reword.
_STATUS_DETAIL = {status: cls.default_message for cls, status in HTTP_STATUS.items()} | {
    405: "Method not allowed."
}
_REWORDED = ("Not Found", "Method Not Allowed")


def status_of(error: DomainError) -> int:
    """The HTTP status of a domain error (its nearest class in `HTTP_STATUS`)."""
    for cls in type(error).__mro__:
        if cls in HTTP_STATUS:
            return HTTP_STATUS[cls]
    return 400


def error_body(error: DomainError, *, detail_key: str = "detail") -> ErrorBody:
    """Field errors as they are, otherwise `{detail_key: message}`.

    `detail_key` is for the one contract body that names it otherwise (activation links
    answer `{"message": ...}`).
    """
    if error.field_errors:
        return dict(error.field_errors)
    return {detail_key: error.message}


def error_headers(error: DomainError) -> dict[str, str]:
    if isinstance(error, Unauthorized):
        return {"WWW-Authenticate": "Bearer"}
    if isinstance(error, RateLimited | Unavailable):
        return {"Retry-After": str(error.retry_after)}
    return {}


def error_response(error: DomainError, *, detail_key: str = "detail") -> JSONResponse:
    """The response for a domain error; routes use it only to add to a failure response
    (cookies to clear) or to name the detail key the contract asks for."""
    return JSONResponse(
        error_body(error, detail_key=detail_key),
        status_code=status_of(error),
        headers=error_headers(error) or None,
    )


def field_errors_from_validation(exc: RequestValidationError) -> ErrorBody:
    """FastAPI's request validation errors as the contract's field-error body."""
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
    if not errors:
        return {"detail": "Invalid input."}
    body: ErrorBody = dict(errors)
    if "detail" in errors:
        body["detail"] = " ".join(errors["detail"])  # a general message is one string
    return body


def _http_error_body(exc: StarletteHTTPException) -> object:
    detail: object = exc.detail  # FastAPI's HTTPException allows any JSON-able detail
    if isinstance(detail, dict):
        return detail
    if not isinstance(detail, str) or detail in _REWORDED:
        detail = _STATUS_DETAIL.get(exc.status_code, str(detail))
    return {"detail": detail}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def domain_error(request: Request, exc: DomainError) -> JSONResponse:
        if isinstance(exc, Unavailable):
            logger.warning("unavailable on %s %s: %s", request.method, request.url.path, exc)
        return error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(_http_error_body(exc), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        body = field_errors_from_validation(exc)
        return JSONResponse(body, status_code=HTTP_STATUS[InvalidInput])

    @app.exception_handler(sqlalchemy.exc.TimeoutError)
    async def pool_exhausted(request: Request, _exc: sqlalchemy.exc.TimeoutError) -> JSONResponse:
        # Every database connection stayed busy past the pool timeout: overload, not a bug.
        logger.warning("database pool exhausted on %s %s", request.method, request.url.path)
        return error_response(Unavailable(retry_after=2))

    async def database_unavailable(request: Request, exc: Exception) -> JSONResponse:
        # The database refused or lost the connection: a passing outage, not a bug.
        logger.warning("database unavailable on %s: %s", request.url.path, exc)
        return error_response(Unavailable(retry_after=5))

    app.add_exception_handler(sqlalchemy.exc.OperationalError, database_unavailable)
    app.add_exception_handler(sqlalchemy.exc.InterfaceError, database_unavailable)

    @app.exception_handler(Exception)
    async def unhandled(request: Request, _exc: Exception) -> JSONResponse:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "Internal server error."}, status_code=500)
