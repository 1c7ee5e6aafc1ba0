"""Request and response bodies of the auth routes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from torale.inputs import Text


class UserRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str | None
    first_name: str | None
    role: Literal["user", "admin"]
    is_active: bool
    created_at: datetime
    clerk_user_id: str | None = Field(
        default=None, description="Set when the user came from the identity provider."
    )


class SyncUserResponse(BaseModel):
    user: UserRead
    created: bool


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Text = Field(min_length=1, max_length=100, examples=["laptop"])

    @field_validator("name")
    @classmethod
    def _strip(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("Name must not be blank")
        return value


class ApiKeyRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    key_prefix: str = Field(description="The first 12 characters of the key, to recognise it.")
    created_at: datetime
    last_used_at: datetime | None = Field(
        description="When the key was last used (recorded within about a minute)."
    )
    is_active: bool


class ApiKeyCreated(BaseModel):
    key: str = Field(description="The API key. Shown only in this response: store it now.")
    key_info: ApiKeyRead


class RevokedResponse(BaseModel):
    status: Literal["revoked"] = "revoked"
