"""Fixtures for the mailings tests: API bearer headers; the SendGrid contract, a running stand-in, a backend on it."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from campaign.auth import tokens
from campaign.auth.models import User
from campaign.extensions import db
from campaign.mailings.sendgrid import SendGridBackend
from tests import sendgrid_contract
from tests.sendgrid_standin import StandIn


@pytest.fixture
def bearer(app):
    """``bearer(account)``: the Authorization header of a fresh API token for that account."""

    def make(account) -> dict[str, str]:
        with app.app_context():
            _, raw = tokens.create_token(db.session.get(User, account.id), "tests")
            db.session.commit()
        return {"Authorization": f"Bearer {raw}"}

    return make


@pytest.fixture(scope="session")
def contract() -> None:
    """SendGrid's contract file, compiled.  Missing, it fails the tests under
    ``DEMARCHE_REQUIRE_ALL=1`` (CI) and skips them otherwise."""
    try:
        sendgrid_contract.validator()
    except sendgrid_contract.ContractMissing as exc:
        if os.environ.get("DEMARCHE_REQUIRE_ALL") == "1":
            pytest.fail(f"{exc}; the contract tests cannot run without it", pytrace=False)
        pytest.skip(str(exc))


@pytest.fixture
def standin(contract: None) -> Iterator[StandIn]:
    with StandIn() as server:
        yield server


@pytest.fixture
def sendgrid_backend(standin: StandIn) -> SendGridBackend:
    return SendGridBackend(standin.api_key, host=standin.url, timeout=2)
