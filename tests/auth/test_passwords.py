"""Password hashing, and sign-in that costs the same whether or not an address has an account.

No timings here: the tests check that both paths ask the hasher for the same work.
"""

import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher, extract_parameters

from campaign.auth import passwords
from campaign.auth.models import User
from campaign.extensions import db
from tests import factories

UNKNOWN = "nobody-here@example.org"
FAILED = "That email and password do not match an active account."


@pytest.fixture
def hasher_calls(monkeypatch):
    """Every call to Argon2, as (method, parameters of the hash made or checked)."""
    calls: list[tuple[str, object]] = []
    original_hash, original_verify = PasswordHasher.hash, PasswordHasher.verify

    def record_hash(self, *args, **kwargs):
        made = original_hash(self, *args, **kwargs)
        calls.append(("hash", extract_parameters(made)))
        return made

    def record_verify(self, hash, password):
        calls.append(("verify", extract_parameters(hash)))
        return original_verify(self, hash, password)

    monkeypatch.setattr(PasswordHasher, "hash", record_hash)
    monkeypatch.setattr(PasswordHasher, "verify", record_verify)
    return calls


def test_a_miss_verifies_once_against_a_dummy_hashed_once_per_parameters(ctx, hasher_calls):
    passwords._dummy_hash.cache_clear()
    assert passwords.verify_password(None, "anything at all") is False
    real = extract_parameters(passwords.hash_password("a real password here"))
    assert hasher_calls == [("hash", real), ("verify", real), ("hash", real)]
    hasher_calls.clear()
    for _ in range(3):
        assert passwords.verify_password(None, "anything at all") is False
    assert hasher_calls == [("verify", real)] * 3  # the dummy is not hashed again


def test_the_dummy_follows_the_configured_parameters(app, ctx, monkeypatch):
    monkeypatch.setitem(app.config, "ARGON2_TIME_COST", 2)
    monkeypatch.setitem(app.config, "ARGON2_MEMORY_COST", 2048)
    dummy = extract_parameters(passwords._dummy_hash(*passwords._parameters()))
    assert dummy == extract_parameters(passwords.hash_password("a real password here"))
    assert (dummy.time_cost, dummy.memory_cost) == (2, 2048)


def test_the_dummy_password_never_signs_anyone_in(ctx):
    assert passwords.verify_password(None, passwords._DUMMY_PASSWORD) is False


@pytest.fixture
def accounts(app, make_account):
    """A member, an inactive member and an invited member who has not chosen a password yet."""
    inactive = make_account("member")
    with app.app_context():
        db.session.execute(sa.update(User).where(User.id == inactive.id).values(active=False))
        db.session.commit()
    return {"known": make_account("member"), "inactive": inactive, "invited": make_account("member", password=None)}


@pytest.mark.parametrize(
    ("who", "password"),
    [("known", "wrong password entirely"), ("inactive", factories.PASSWORD), ("invited", factories.PASSWORD)],
)
def test_sign_in_asks_argon2_for_the_same_work_for_unknown_and_known_addresses(
    client, accounts, hasher_calls, who, password
):
    client.post("/login", data={"email": UNKNOWN, "password": password})  # the dummy is made once, here at most
    hasher_calls.clear()

    unknown = client.post("/login", data={"email": UNKNOWN, "password": password})
    unknown_calls = list(hasher_calls)
    hasher_calls.clear()
    known = client.post("/login", data={"email": accounts[who].email, "password": password})

    assert hasher_calls == unknown_calls
    assert [method for method, _ in unknown_calls] == ["verify"]
    assert known.status_code == unknown.status_code == 401
    assert FAILED in known.get_data(as_text=True) and FAILED in unknown.get_data(as_text=True)
