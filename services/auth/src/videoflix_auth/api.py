"""Auth routes (the auth rows of API.md, plus the JWKS): parse, call the service, respond.

Cookies: `access_token` and `refresh_token` are HttpOnly, `csrftoken` is readable by the
frontend (it echoes it as `X-CSRFToken` on logout); all SameSite=Lax, Path=/, Secure when
COOKIE_SECURE. The refresh call carries no CSRF header (the frontend sends none): it is
safe without one because it only sets new cookies and returns no token.
"""

from __future__ import annotations

import logging
import secrets
from typing import Annotated

from fastapi import APIRouter, Cookie, Depends, FastAPI, Header, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy.exc import InterfaceError, OperationalError

from videoflix_auth import schemas
from videoflix_auth.keys import KeySet
from videoflix_auth.passwords import HashingBusy
from videoflix_auth.ratelimit import RateLimited
from videoflix_auth.service import (
    AuthService,
    InvalidCredentials,
    InvalidLink,
    InvalidRefreshToken,
    IssuedSession,
)
from videoflix_auth.settings import AuthSettings
from videoflix_shared.db import Session
from videoflix_shared.security import (
    ACCESS_COOKIE,
    CSRF_COOKIE,
    REFRESH_COOKIE,
    Authenticated,
    csrf_matches,
    unauthorized,
)

REGISTERED = "Registration successful. Please check your email to activate your account."
ACTIVATED = "Account successfully activated."
LOGIN_OK = "Login successful"
LOGIN_FAILED = "Please check your input and try again."
LOGOUT_OK = "Logout successful! All tokens will be deleted. Refresh token is now invalid."
REFRESHED = "Token refreshed"
RESET_SENT = "An email has been sent to reset your password."
RESET_DONE = "Your Password has been successfully reset."
RATE_LIMITED = "Too many attempts. Please try again later."
BUSY = "The service is busy. Please try again shortly."

logger = logging.getLogger(__name__)

router = APIRouter()

# Declared so the OpenAPI document (and the fuzzer) know the cookie-only endpoints.
RefreshCookie = Annotated[str | None, Cookie(alias=REFRESH_COOKIE)]
CsrfCookie = Annotated[str | None, Cookie(alias=CSRF_COOKIE)]
CsrfHeader = Annotated[str | None, Header(alias="X-CSRFToken")]


def get_service(request: Request) -> AuthService:
    return request.app.state.auth_service


def get_settings(request: Request) -> AuthSettings:
    return request.app.state.settings


def get_keys(request: Request) -> KeySet:
    return request.app.state.signing_keys


Service = Annotated[AuthService, Depends(get_service)]
Settings = Annotated[AuthSettings, Depends(get_settings)]
SigningKeys = Annotated[KeySet, Depends(get_keys)]


def client_ip(request: Request) -> str:
    # uvicorn trusts X-Forwarded-For only from the gateway (127.0.0.1), so this is the
    # real client behind the gateway and cannot be spoofed from outside.
    return request.client.host if request.client else "unknown"


def set_session_cookies(
    response: Response, settings: AuthSettings, issued: IssuedSession, *, csrf_token: str
) -> None:
    common = {"secure": settings.cookie_secure, "samesite": "lax", "path": "/"}
    response.set_cookie(
        ACCESS_COOKIE,
        issued.access_token,
        max_age=settings.access_token_ttl_seconds,
        httponly=True,
        **common,
    )
    response.set_cookie(
        REFRESH_COOKIE,
        issued.refresh_token,
        max_age=settings.refresh_token_ttl_seconds,
        httponly=True,
        **common,
    )
    response.set_cookie(
        CSRF_COOKIE,
        csrf_token,
        max_age=settings.refresh_token_ttl_seconds,
        httponly=False,
        **common,
    )


def delete_session_cookies(response: Response, settings: AuthSettings) -> None:
    for name in (ACCESS_COOKIE, REFRESH_COOKIE, CSRF_COOKIE):
        response.delete_cookie(
            name,
            path="/",
            secure=settings.cookie_secure,
            httponly=name != CSRF_COOKIE,
            samesite="lax",
        )


@router.post("/api/register/", status_code=201, response_model=schemas.RegisterResponse)
async def register(
    body: schemas.RegisterRequest, request: Request, session: Session, service: Service
) -> dict:
    email = await service.register(
        session,
        email=body.email,
        password=body.password,
        confirmed_password=body.confirmed_password,
        client_ip=client_ip(request),
    )
    return {"user": {"email": email}, "detail": REGISTERED}


@router.get(
    "/api/activate/{uidb64}/{token}/",
    response_model=schemas.MessageResponse,
    responses={400: {"model": schemas.MessageResponse}},
)
async def activate(uidb64: str, token: str, session: Session, service: Service) -> dict:
    try:
        await service.activate(session, uidb64=uidb64, token=token)
    except InvalidLink as exc:
        raise HTTPException(400, {"message": exc.message}) from None
    return {"message": ACTIVATED}


@router.post("/api/login/", response_model=schemas.LoginResponse)
async def login(
    body: schemas.LoginRequest,
    request: Request,
    response: Response,
    session: Session,
    service: Service,
    settings: Settings,
) -> dict:
    try:
        issued = await service.login(
            session, email=body.email, password=body.password, client_ip=client_ip(request)
        )
    except InvalidCredentials:
        raise HTTPException(400, LOGIN_FAILED) from None
    set_session_cookies(response, settings, issued, csrf_token=secrets.token_urlsafe(32))
    return {"detail": LOGIN_OK, "user": {"id": issued.user.id, "username": issued.user.email}}


@router.post("/api/logout/", response_model=schemas.DetailResponse)
async def logout(
    response: Response,
    session: Session,
    service: Service,
    settings: Settings,
    refresh_token: RefreshCookie = None,
    csrftoken: CsrfCookie = None,
    x_csrftoken: CsrfHeader = None,
) -> dict:
    # No access token needed: logging out must work after it expired.
    if not refresh_token:
        raise HTTPException(400, "Refresh token cookie is missing.")
    if not csrf_matches(csrftoken, x_csrftoken):
        raise HTTPException(403, "CSRF token missing or incorrect.")
    await service.logout(session, refresh_token=refresh_token)
    delete_session_cookies(response, settings)
    return {"detail": LOGOUT_OK}


@router.post("/api/token/refresh/", response_model=schemas.DetailResponse)
async def refresh(
    session: Session,
    service: Service,
    settings: Settings,
    refresh_token: RefreshCookie = None,
    csrftoken: CsrfCookie = None,
) -> Response:
    if not refresh_token:
        raise HTTPException(400, "Refresh token cookie is missing.")
    try:
        issued = await service.refresh(session, refresh_token=refresh_token)
    except InvalidRefreshToken:
        failed = JSONResponse(
            {"detail": "Refresh token is invalid, expired or revoked."},
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )
        delete_session_cookies(failed, settings)
        return failed
    response = JSONResponse({"detail": REFRESHED})
    # Keep the CSRF token the page already holds; issue one if it went missing.
    set_session_cookies(
        response, settings, issued, csrf_token=csrftoken or secrets.token_urlsafe(32)
    )
    return response


@router.post("/api/password_reset/", response_model=schemas.DetailResponse)
async def password_reset(
    body: schemas.PasswordResetRequest, request: Request, session: Session, service: Service
) -> dict:
    await service.request_password_reset(session, email=body.email, client_ip=client_ip(request))
    return {"detail": RESET_SENT}


@router.post("/api/password_confirm/{uidb64}/{token}/", response_model=schemas.DetailResponse)
async def password_confirm(
    uidb64: str,
    token: str,
    body: schemas.PasswordConfirmRequest,
    session: Session,
    service: Service,
) -> dict:
    try:
        await service.confirm_password_reset(
            session,
            uidb64=uidb64,
            token=token,
            new_password=body.new_password,
            confirm_password=body.confirm_password,
        )
    except InvalidLink as exc:
        raise HTTPException(400, exc.message) from None
    return {"detail": RESET_DONE}


@router.get("/api/user/", response_model=schemas.UserResponse)
async def current_user(session: Session, service: Service, principal: Authenticated) -> dict:
    user = await service.get_user(session, user_id=principal.user_id)
    if user is None:
        raise unauthorized("This account no longer exists or is inactive.")
    return {
        "id": user.id,
        "email": user.email,
        "is_admin": user.is_admin,
        "date_joined": user.date_joined,
    }


@router.get("/.well-known/jwks.json", response_model=schemas.JwksResponse)
@router.get("/api/auth/jwks/", response_model=schemas.JwksResponse, include_in_schema=False)
async def jwks(keys: SigningKeys) -> JSONResponse:
    # Short cache: verifiers refetch on an unknown kid anyway, so rotation is not delayed.
    return JSONResponse(keys.jwks(), headers={"Cache-Control": "public, max-age=300"})


def install_exception_handlers(app: FastAPI) -> None:
    async def database_unavailable(request: Request, exc: Exception) -> JSONResponse:
        # The database refused or lost the connection: a passing outage, not a bug.
        logger.warning("database unavailable on %s: %s", request.url.path, exc)
        return JSONResponse(
            {"detail": "Service temporarily unavailable. Please try again shortly."},
            status_code=503,
            headers={"Retry-After": "5"},
        )

    app.add_exception_handler(OperationalError, database_unavailable)
    app.add_exception_handler(InterfaceError, database_unavailable)

    @app.exception_handler(HashingBusy)
    async def hashing_busy(request: Request, exc: HashingBusy) -> JSONResponse:
        # Overload (a registration flood): shed this request instead of queueing it.
        logger.warning("password hashing saturated on %s", request.url.path)
        return JSONResponse(
            {"detail": BUSY},
            status_code=503,
            headers={"Retry-After": str(exc.retry_after)},
        )

    @app.exception_handler(RateLimited)
    async def rate_limited(request: Request, exc: RateLimited) -> JSONResponse:
        return JSONResponse(
            {"detail": RATE_LIMITED},
            status_code=429,
            headers={"Retry-After": str(exc.retry_after)},
        )
