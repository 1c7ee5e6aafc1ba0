"""Users and API keys: the rules and the queries. Callers commit."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from torale.auth.keys import DISPLAY_PREFIX_LENGTH, generate_api_key, hash_api_key
from torale.db.models import ApiKey, Task, User
from torale.db.statements import insert_unless_conflict
from torale.errors import ConflictError, NotFoundError
from torale.inputs import text_problem
from torale.pagination import PageParams, paginate

Role = Literal["user", "admin"]


async def get_user_by_email(session: AsyncSession, *, email: str) -> User | None:
    return await session.scalar(select(User).where(User.email == email.strip().lower()))


async def create_user(
    session: AsyncSession, *, email: str, role: Role = "user", first_name: str | None = None
) -> User:
    """Create a user; ConflictError when the email is taken (also by a concurrent request)."""
    user_id = uuid.uuid4()
    now = datetime.now(UTC)
    inserted = await insert_unless_conflict(
        session,
        User,
        {
            "id": user_id,
            "email": email.strip().lower(),
            "first_name": first_name,
            "role": role,
            "is_active": True,
            "created_at": now,
            "updated_at": now,
        },
    )
    if not inserted:
        raise ConflictError(f"A user with email {email} already exists")
    user = await session.get(User, user_id)
    assert user is not None
    return user


async def get_user_by_subject(session: AsyncSession, *, subject: str) -> User | None:
    return await session.scalar(select(User).where(User.clerk_user_id == subject))


def _claim(claims: dict[str, Any], *names: str) -> str | None:
    """The first of these claims that is usable text. One that cannot be stored (a NUL, a lone
    surrogate) is skipped, not cleaned: a cleaned email could be someone else's."""
    for name in names:
        value = claims.get(name)
        if isinstance(value, str) and value.strip() and text_problem(value) is None:
            return value.strip()
    return None


def verified_email(claims: dict[str, Any]) -> str | None:
    """The token's email address (lowercased) if the provider says it verified it, else None.

    Only `email_verified: true` (or the string "true", as some providers send it) counts: an
    address anyone can type at sign-up proves nothing, and a squatter who claimed someone's
    address must not end up with it on their account. A token without a verified address signs
    in by its subject alone.
    """
    email = _claim(claims, "email", "email_address", "primary_email")
    verified = claims.get("email_verified")
    if isinstance(verified, str):
        verified = verified.strip().lower() == "true"
    return email.lower() if email and verified is True else None


async def sync_user_from_claims(
    session: AsyncSession, *, claims: dict[str, Any], update: bool = True
) -> tuple[User, bool]:
    """The local user for an identity-provider subject, made on first sight.

    The account is found by subject only, never by email. Its email comes from the token only
    when the provider verified it (`verified_email`); an unverified one is ignored (a new
    account gets none, an existing one keeps its own).

    Safe to call concurrently: the insert ignores conflicts and the row is read back.
    With `update`, email and first name are refreshed from the token.
    """
    subject = str(claims["sub"])
    email = verified_email(claims)
    first_name = _claim(claims, "first_name", "given_name", "name")

    user = await get_user_by_subject(session, subject=subject)
    created = False
    if user is None:
        now = datetime.now(UTC)
        created = await insert_unless_conflict(
            session,
            User,
            {
                "id": uuid.uuid4(),
                "email": email,
                "first_name": first_name,
                "role": "user",
                "is_active": True,
                "clerk_user_id": subject,
                "created_at": now,
                "updated_at": now,
            },
        )
        user = await get_user_by_subject(session, subject=subject)
        if user is None:
            # Nothing with our subject exists, so the conflict was on the email.
            raise ConflictError(
                "This email address already belongs to another account on this server"
            )
        return user, created

    if update and (email, first_name) != (user.email, user.first_name):
        if email and email != user.email:
            taken = await session.scalar(
                select(User.id).where(User.email == email, User.id != user.id)
            )
            if taken is not None:
                raise ConflictError(
                    "This email address already belongs to another account on this server"
                )
            user.email = email
        if first_name:
            user.first_name = first_name
        await session.flush()
    return user, created


def claimed_role(claims: dict[str, Any], path: str) -> Role:
    """The role a token claims at `path` (dotted): admin only when it says exactly "admin"."""
    value: Any = claims
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return "admin" if value == "admin" else "user"


async def apply_role_claim(
    session: AsyncSession, *, user: User, claims: dict[str, Any], path: str | None
) -> bool:
    """Make the user's role what the token claims; True if it changed (a write)."""
    if path is None:
        return False
    role = claimed_role(claims, path)
    if user.role == role:
        return False
    user.role = role
    await session.flush()
    return True


async def create_api_key(
    session: AsyncSession, *, user_id: uuid.UUID, name: str, hashing_key: bytes
) -> tuple[ApiKey, str]:
    """A new key for the user: the row, and the key itself (never stored, shown once)."""
    raw = generate_api_key()
    key = ApiKey(
        id=uuid.uuid4(),
        user_id=user_id,
        name=name,
        key_prefix=raw[:DISPLAY_PREFIX_LENGTH],
        key_hash=hash_api_key(raw, hashing_key),
        created_at=datetime.now(UTC),
    )
    session.add(key)
    await session.flush()
    return key, raw


async def list_api_keys(
    session: AsyncSession, *, user_id: uuid.UUID, page: PageParams
) -> tuple[list[ApiKey], int]:
    statement = (
        select(ApiKey)
        .where(ApiKey.user_id == user_id)
        .order_by(ApiKey.created_at.desc(), ApiKey.id.desc())
    )
    return await paginate(session, statement, page)


async def revoke_api_key(session: AsyncSession, *, user_id: uuid.UUID, key_id: uuid.UUID) -> None:
    key = await session.scalar(select(ApiKey).where(ApiKey.id == key_id, ApiKey.user_id == user_id))
    if key is None:
        raise NotFoundError("API key not found")
    if key.revoked_at is None:
        key.revoked_at = datetime.now(UTC)
        await session.flush()


async def bootstrap_admin(
    session: AsyncSession, *, email: str, hashing_key: bytes
) -> tuple[User, str] | None:
    """On an empty database: an admin user and one API key. None when users already exist."""
    if await session.scalar(select(User.id).limit(1)) is not None:
        return None
    try:
        user = await create_user(session, email=email, role="admin")
    except ConflictError:
        return None  # another process bootstrapped at the same moment
    _, raw = await create_api_key(
        session, user_id=user.id, name="bootstrap", hashing_key=hashing_key
    )
    return user, raw


async def list_users_with_counts(session: AsyncSession) -> list[tuple[User, int, int]]:
    """Every user with their active key count and task count (one query)."""
    keys = (
        select(ApiKey.user_id, func.count().label("n"))
        .where(ApiKey.revoked_at.is_(None))
        .group_by(ApiKey.user_id)
        .subquery()
    )
    tasks = select(Task.user_id, func.count().label("n")).group_by(Task.user_id).subquery()
    rows = await session.execute(
        select(User, func.coalesce(keys.c.n, 0), func.coalesce(tasks.c.n, 0))
        .outerjoin(keys, keys.c.user_id == User.id)
        .outerjoin(tasks, tasks.c.user_id == User.id)
        .order_by(User.created_at)
    )
    return [(user, int(n_keys), int(n_tasks)) for user, n_keys, n_tasks in rows]


async def account_for_operator(
    session: AsyncSession, *, email: str | None = None, user_id: uuid.UUID | None = None
) -> User | None:
    """The account an operator command that gives something (`torale keys create`, `torale
    users promote`) means, refusing ambiguous cases with what to do instead.

    By `user_id`: that account (404 without it; 409 if `email` is given and is not its
    address). By `email` alone: None when no account has it (the caller may create one); the
    account when an operator made it. An account made by a sign-in through the identity
    provider is refused (409): its address came from a sign-in token, so whoever holds it at the
    provider would get the key or the role. The operator checks who it is and names it by id.
    """
    if user_id is not None:
        user = await session.get(User, user_id)
        if user is None:
            raise NotFoundError(f"No user with id {user_id}")
        if email is not None and (user.email or "") != email.strip().lower():
            raise ConflictError(
                f"The user with id {user_id} has email {user.email or '(none)'}, not {email}"
            )
        return user
    if email is None:
        raise ValueError("an email or a user id")
    wanted = email.strip().lower()
    found = list(await session.scalars(select(User).where(func.lower(User.email) == wanted)))
    if not found:
        return None
    if len(found) > 1:
        ids = ", ".join(str(u.id) for u in found)
        raise ConflictError(
            f"Several accounts have email {email} ({ids}): pick one with --user-id ID"
        )
    user = found[0]
    if user.clerk_user_id is not None:
        raise ConflictError(
            f"The account with email {wanted} (id {user.id}, created {user.created_at:%Y-%m-%d}) "
            f"signs in through the identity provider (subject {user.clerk_user_id}): its address "
            "came from a sign-in token, not from an operator. Check that it is the person you "
            f"mean (torale users list), then run the command again with --user-id {user.id}."
        )
    return user


async def set_role(
    session: AsyncSession, *, email: str | None, role: Role, user_id: uuid.UUID | None = None
) -> User:
    """Give an account a role. Promoting by email refuses the ambiguous cases of
    `account_for_operator`; demoting takes whatever account has the address."""
    if role == "admin" or user_id is not None:
        user = await account_for_operator(session, email=email, user_id=user_id)
    else:
        user = await get_user_by_email(session, email=email or "")
    if user is None:
        raise NotFoundError(f"No user with email {email}")
    user.role = role
    await session.flush()
    return user
