"""Request and response bodies of the auth API (field names fixed by the API contract).

Strings are capped in length and must be valid Unicode text (no lone surrogates, which
JSON allows but nothing downstream can store or hash): such input is a 400, not a 500.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from videoflix_auth.passwords import MAX_LENGTH as MAX_PASSWORD_LENGTH


def _encodable(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("Contains characters that are not valid text.") from exc
    return value


# `format: email` documents the field and lets schema-driven clients (and the fuzzer)
# produce real addresses; the service validates and normalises them itself.
EmailField = Annotated[
    str, Field(max_length=320, json_schema_extra={"format": "email"}), AfterValidator(_encodable)
]
PasswordField = Annotated[str, Field(max_length=MAX_PASSWORD_LENGTH), AfterValidator(_encodable)]


class RequestBody(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=False)


class RegisterRequest(RequestBody):
    email: EmailField
    password: PasswordField
    confirmed_password: PasswordField


class LoginRequest(RequestBody):
    email: EmailField
    password: PasswordField


class PasswordResetRequest(RequestBody):
    email: EmailField


class PasswordConfirmRequest(RequestBody):
    new_password: PasswordField
    confirm_password: PasswordField


class RegisteredUser(BaseModel):
    email: str


class RegisterResponse(BaseModel):
    user: RegisteredUser
    detail: str


class MessageResponse(BaseModel):
    message: str


class DetailResponse(BaseModel):
    detail: str


class LoginUser(BaseModel):
    id: int
    username: str


class LoginResponse(BaseModel):
    detail: str
    user: LoginUser


class UserResponse(BaseModel):
    id: int
    email: str
    is_admin: bool
    date_joined: datetime


class Jwk(BaseModel):
    kty: str
    kid: str
    alg: str
    use: str
    n: str
    e: str


class JwksResponse(BaseModel):
    keys: list[Jwk]
