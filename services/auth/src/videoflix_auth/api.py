"""Auth routes (the auth rows of API.md, plus the JWKS): parse, call the service, respond.

Cookies: `access_token` and `refresh_token` are HttpOnly, `csrftoken` is readable by the
frontend (it echoes it as `X-CSRFToken` on logout); all SameSite=Lax, Path=/, Secure when
COOKIE_SECURE. The refresh call carries no CSRF header (the frontend sends none): it is
safe without one because it only sets new cookies and returns no token.

Refusals are domain errors (`videoflix_shared.errors`) raised here or by the service; the
app factory's handlers turn them into status and body. Two routes add to the failure
response themselves (`error_response`): activation names its message `message`, and a
failed refresh clears the session cookies.
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Cookie, Depends, Header, Request, Response
from fastapi.responses import JSONResponse

from videoflix_auth import schemas
from videoflix_auth.keys import KeySet
from videoflix_auth.service import AuthService, InvalidLink, InvalidRefreshToken, IssuedSession
from videoflix_auth.settings import AuthSettings
from videoflix_shared.db import Session
from videoflix_shared.error_responses import error_response
from videoflix_shared.errors import Forbidden, InvalidInput, Unauthorized
from videoflix_shared.security import (
    ACCESS_COOKIE,
    CSRF_COOKIE,
    REFRESH_COOKIE,
    Authenticated,
    csrf_matches,
)

REGISTERED = "Registration successful. Please check your email to activate your account."
ACTIVATED = "Account successfully activated."
LOGIN_OK = "Login successful"
LOGOUT_OK = "Logout successful! All tokens will be deleted. Refresh token is now invalid."
REFRESHED = "Token refreshed"
RESET_SENT = "An email has been sent to reset your password."
RESET_DONE = "Your Password has been successfully reset."
NO_REFRESH_COOKIE = "Refresh token cookie is missing."

router = APIRouter()

# Declared so the OpenAPI document (and the fuzzer) know the cookie-only endpoints.
RefreshCookie = Annotated[str | None, Cookie(alias=REFRESH_COOKIE)]
CsrfCookie = Annotated[str | None, Cookie(alias=CSRF_COOKIE)]
CsrfHeader = Annotated[str | None, Header(alias="X-CSRFToken")]


def get_service(request: Request) -> AuthService:
    service: AuthService = request.app.state.auth_service
    return service


def get_settings(request: Request) -> AuthSettings:
    settings: AuthSettings = request.app.state.settings
    return settings


def get_keys(request: Request) -> KeySet:
    keys: KeySet = request.app.state.signing_keys
    return keys


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
    for name, value, max_age in (
        (ACCESS_COOKIE, issued.access_token, settings.access_token_ttl_seconds),
        (REFRESH_COOKIE, issued.refresh_token, settings.refresh_token_ttl_seconds),
        (CSRF_COOKIE, csrf_token, settings.refresh_token_ttl_seconds),
    ):
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            httponly=name != CSRF_COOKIE,
            secure=settings.cookie_secure,
            samesite="lax",
            path="/",
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
) -> schemas.RegisterResponse:
    email = await service.register(
        session,
        email=body.email,
        password=body.password,
        confirmed_password=body.confirmed_password,
        client_ip=client_ip(request),
    )
    return schemas.RegisterResponse(user=schemas.RegisteredUser(email=email), detail=REGISTERED)


@router.get(
    "/api/activate/{uidb64}/{token}/",
    response_model=schemas.MessageResponse,
    responses={400: {"model": schemas.MessageResponse}},
)
async def activate(
    uidb64: str, token: str, session: Session, service: Service
) -> schemas.MessageResponse | JSONResponse:
    try:
        await service.activate(session, uidb64=uidb64, token=token)
    except InvalidLink as exc:
        return error_response(exc, detail_key="message")  # the contract's key here
    return schemas.MessageResponse(message=ACTIVATED)


@router.post("/api/login/", response_model=schemas.LoginResponse)
async def login(
    body: schemas.LoginRequest,
    request: Request,
    response: Response,
    session: Session,
    service: Service,
    settings: Settings,
) -> schemas.LoginResponse:
    issued = await service.login(
        session, email=body.email, password=body.password, client_ip=client_ip(request)
    )
    set_session_cookies(response, settings, issued, csrf_token=secrets.token_urlsafe(32))
    return schemas.LoginResponse(
        detail=LOGIN_OK, user=schemas.LoginUser(id=issued.user.id, username=issued.user.email)
    )


@router.post("/api/logout/", response_model=schemas.DetailResponse)
async def logout(
    response: Response,
    session: Session,
    service: Service,
    settings: Settings,
    refresh_token: RefreshCookie = None,
    csrftoken: CsrfCookie = None,
    x_csrftoken: CsrfHeader = None,
) -> schemas.DetailResponse:
    # No access token needed: logging out must work after it expired.
    if not refresh_token:
        raise InvalidInput(NO_REFRESH_COOKIE)
    if not csrf_matches(csrftoken, x_csrftoken):
        raise Forbidden("CSRF token missing or incorrect.")
    await service.logout(session, refresh_token=refresh_token)
    delete_session_cookies(response, settings)
    return schemas.DetailResponse(detail=LOGOUT_OK)


@router.post("/api/token/refresh/", response_model=schemas.DetailResponse)
async def refresh(
    session: Session,
    service: Service,
    settings: Settings,
    refresh_token: RefreshCookie = None,
    csrftoken: CsrfCookie = None,
) -> Response:
    if not refresh_token:
        raise InvalidInput(NO_REFRESH_COOKIE)
    try:
        issued = await service.refresh(session, refresh_token=refresh_token)
    except InvalidRefreshToken as exc:
        failed = error_response(exc)
        delete_session_cookies(failed, settings)  # the browser drops the dead session
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
) -> schemas.DetailResponse:
    await service.request_password_reset(session, email=body.email, client_ip=client_ip(request))
    return schemas.DetailResponse(detail=RESET_SENT)


@router.post("/api/password_confirm/{uidb64}/{token}/", response_model=schemas.DetailResponse)
async def password_confirm(
    uidb64: str,
    token: str,
    body: schemas.PasswordConfirmRequest,
    session: Session,
    service: Service,
) -> schemas.DetailResponse:
    await service.confirm_password_reset(
        session,
        uidb64=uidb64,
        token=token,
        new_password=body.new_password,
        confirm_password=body.confirm_password,
    )
    return schemas.DetailResponse(detail=RESET_DONE)


@router.get("/api/user/", response_model=schemas.UserResponse)
async def current_user(
    session: Session, service: Service, principal: Authenticated
) -> schemas.UserResponse:
    user = await service.get_user(session, user_id=principal.user_id)
    if user is None:
        raise Unauthorized("This account no longer exists or is inactive.")
    return schemas.UserResponse(
        id=user.id, email=user.email, is_admin=user.is_admin, date_joined=user.date_joined
    )


@router.get("/.well-known/jwks.json", response_model=schemas.JwksResponse)
@router.get("/api/auth/jwks/", response_model=schemas.JwksResponse, include_in_schema=False)
async def jwks(keys: SigningKeys) -> JSONResponse:
    # Short cache: verifiers refetch on an unknown kid anyway, so rotation is not delayed.
    return JSONResponse(keys.jwks(), headers={"Cache-Control": "public, max-age=300"})
