"""Request and response bodies of the auth service (shapes of the original system kept)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

from sensorcloud.auth.passwords import MAX_LENGTH, password_problem

Username = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=3, max_length=32, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
    ),
]
# Login accepts anything up to a sane size and answers 401 for what does not match; the
# policy applies only to new passwords.
LoginPassword = Annotated[str, Field(min_length=1, max_length=4 * MAX_LENGTH)]


class RegisterRequest(BaseModel):
    """Extra fields (role, is_admin, active...) are ignored: nobody registers as admin."""

    model_config = ConfigDict(extra="ignore")

    email: EmailStr = Field(max_length=254)
    username: Username
    password: str = Field(max_length=4 * MAX_LENGTH)

    @field_validator("email")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.lower()

    @field_validator("password")
    @classmethod
    def _policy(cls, value: str, info: ValidationInfo) -> str:
        # email and username are declared first, so they are in info.data when valid: the
        # "not your name" rule is then reported like the others (a field error, not a bare msg)
        problem = password_problem(
            value, email=info.data.get("email", ""), username=info.data.get("username", "")
        )
        if problem:
            raise ValueError(problem)
        return value


class LoginRequest(BaseModel):
    email: str = Field(min_length=1, max_length=320)
    password: LoginPassword


class RefreshRequest(BaseModel):
    refresh_token: str = Field(min_length=1, max_length=256)


class LogoutRequest(BaseModel):
    refresh_token: str | None = Field(default=None, max_length=256)


class PasswordChangeRequest(BaseModel):
    current_password: LoginPassword
    new_password: str = Field(max_length=4 * MAX_LENGTH)

    @field_validator("new_password")
    @classmethod
    def _policy(cls, value: str) -> str:
        problem = password_problem(value)
        if problem:
            raise ValueError(problem)
        return value


class UserPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    active: bool | None = None
    role: Literal["user", "admin"] | None = None


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    email: str
    username: str
    active: bool
    role: Literal["user", "admin"]
    created_at: datetime


class UsersData(BaseModel):
    users: list[UserOut]


class UsersList(BaseModel):
    data: UsersData


class LoginResponse(BaseModel):
    message: str
    auth_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the scheme name, not a secret
    expires_in: int


class Message(BaseModel):
    message: str
