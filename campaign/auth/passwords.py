"""Password hashing with Argon2id, parameters from the configuration."""

from __future__ import annotations

from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app

MIN_PASSWORD_LENGTH = 12

# Verified against when an email is unknown (or has no password), so a miss costs as much as a hit.
_DUMMY_PASSWORD = "not-a-real-password-but-the-same-cost"  # noqa: S105


@cache
def _hasher_for(time_cost: int, memory_cost: int) -> PasswordHasher:
    return PasswordHasher(time_cost=time_cost, memory_cost=memory_cost)


@cache
def _dummy_hash(time_cost: int, memory_cost: int) -> str:
    """A hash of a password nobody has, made once per set of parameters and kept.

    Hashing it afresh on every miss would cost a hash and a verification, about twice
    what a known address costs, and so tell which addresses have accounts.
    """
    return _hasher_for(time_cost, memory_cost).hash(_DUMMY_PASSWORD)


def _parameters() -> tuple[int, int]:
    return current_app.config["ARGON2_TIME_COST"], current_app.config["ARGON2_MEMORY_COST"]


def _hasher() -> PasswordHasher:
    return _hasher_for(*_parameters())


def hash_password(password: str) -> str:
    return _hasher().hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether ``password`` matches; without a hash, one verification of the same cost, then False."""
    try:
        return _hasher().verify(password_hash or _dummy_hash(*_parameters()), password) and bool(password_hash)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher().check_needs_rehash(password_hash)


def password_problem(password: str) -> str | None:
    """Why a new password is refused, or None."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"Use at least {MIN_PASSWORD_LENGTH} characters."
    if len(password) > 1024:
        return "Use at most 1,024 characters."
    if len(set(password)) < 5:
        return "Use a less repetitive password."
    return None
