"""Fixtures for the tests of SendGrid's side: the contract, a running stand-in, a backend on it,
and the event webhook's signing key.  Registered for the whole suite by ``tests/conftest.py``."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from flask import Flask

from campaign.mailings.sendgrid import SendGridBackend
from tests import sendgrid_contract
from tests.mailings.events import SigningKey
from tests.sendgrid_standin import StandIn


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


@pytest.fixture
def key(app: Flask, monkeypatch: pytest.MonkeyPatch) -> SigningKey:
    """The key SendGrid signs the event webhook's posts with; the app holds its public half."""
    signing = SigningKey()
    monkeypatch.setitem(app.config, "SENDGRID_WEBHOOK_PUBLIC_KEY", signing.public)
    return signing
