"""The SendGrid stand-in itself: it refuses what the real API refuses, and runs as a process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.error import HTTPError

import pytest

from campaign.mailings.backends import Message
from campaign.mailings.sendgrid import SendGridBackend
from tests import sendgrid_contract
from tests.sendgrid_standin import StandIn

REPO = Path(__file__).resolve().parents[2]


def _post(url: str, body: object, key: str | None, path: str = "/v3/mail/send") -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url + path, data=data, method="POST")  # noqa: S310 - a local URL
    request.add_header("Content-Type", "application/json")
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            raw = response.read()
            return response.status, json.loads(raw) if raw else {}
    except HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def _body(*personalizations: dict, **fields: object) -> dict:
    body = {
        "personalizations": list(personalizations) or [{"to": [{"email": "a@mission.example"}]}],
        "from": {"email": "letters@coalition.example"},
        "subject": "Open letter",
        "content": [{"type": "text/plain", "value": "Excellency,"}],
    }
    body.update(fields)
    return body


def _to(*addresses: str) -> list[dict]:
    return [{"email": address} for address in addresses]


def test_the_contract_is_read_beside_the_checkout_never_from_a_copy(contract) -> None:
    path = sendgrid_contract.spec_path()
    if not os.environ.get(sendgrid_contract.SPEC_ENV):
        assert path == REPO.parent / "shared" / "sendgrid" / "tsg_mail_v3.json"
    assert path.is_file()
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert "tsg_mail_v3.json" not in tracked


def test_without_the_contract_the_standin_does_not_start(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv(sendgrid_contract.SPEC_ENV, str(tmp_path / "missing.json"))
    with pytest.raises(sendgrid_contract.ContractMissing, match=r"missing\.json"):
        StandIn()


IN_73_HOURS, IN_80_HOURS = int(time.time()) + 73 * 3600, int(time.time()) + 80 * 3600
A = "a@mission.example"
MANY = [f"r{i}@mission.example" for i in range(1001)]
REFUSED = {
    "1001-personalizations": (_body(*[{"to": _to(address)} for address in MANY]), "personalizations"),
    "1001-to": (_body({"to": _to(*MANY)}), "personalizations"),
    "1001-recipients": (_body({"to": _to(*MANY[:600])}, {"to": _to(*MANY[600:])}), "personalizations"),
    "repeated-to": (_body({"to": _to(A, "A@Mission.Example")}), "personalizations.0.to"),
    "repeated-across": (
        _body({"to": _to(A)}, {"to": _to("b@m.example"), "bcc": _to(A.upper())}),
        "personalizations.1.bcc",
    ),
    "repeated-cc": (_body({"to": _to(A), "cc": _to(A)}), "personalizations.0.cc"),
    "send-at-73h": (_body(send_at=IN_73_HOURS), "send_at"),
    "send-at-80h-personal": (_body({"to": _to(A), "send_at": IN_80_HOURS}), "personalizations.0.send_at"),
    "top-custom-args": (_body(custom_args={"delivery": "1"}), "custom_args"),  # the contract's (mistyped) rule
    "custom-arg-int": (_body({"to": _to(A), "custom_args": {"d": 1}}), "personalizations.0.custom_args.d"),
    "header-int": (_body(headers={"X-Count": 3}), "headers.X-Count"),
    "personal-header-int": (_body({"to": _to(A), "headers": {"X-Count": 3}}), "personalizations.0.headers.X-Count"),
    "substitutions-10001-bytes": (
        _body({"to": _to(A), "substitutions": {"-n-": "x" * 9998}}),
        "personalizations.0.substitutions",
    ),
    "custom-args-10001-bytes": (
        _body({"to": _to(A), "custom_args": {"id": "x" * 9999}}),
        "personalizations.0.custom_args",
    ),
    "bad-address": (_body({"to": _to("not-an-address")}), "personalizations.0.to.0.email"),
    "empty-to": (_body({"to": []}), "personalizations.0.to"),
    "no-personalizations": (_body(personalizations=[]), "personalizations"),
    "no-from": ({k: v for k, v in _body().items() if k != "from"}, None),
    "no-content": (_body(content=[]), "content"),
    "empty-subject": (_body(subject=""), "subject"),
    "tracking-type": (
        _body(tracking_settings={"open_tracking": {"enable": "no"}}),
        "tracking_settings.open_tracking.enable",
    ),
    "disposition": (
        _body(attachments=[{"content": "JVBERg==", "filename": "a.pdf", "disposition": "sideways"}]),
        "attachments.0.disposition",
    ),
    "repeated-category": (_body(categories=["a", "a"]), "categories"),
}


@pytest.mark.parametrize(("body", "field"), list(REFUSED.values()), ids=list(REFUSED))
def test_what_the_real_api_refuses_is_refused(standin, body, field) -> None:
    status, answer = _post(standin.url, body, standin.api_key)
    assert status == 400, answer
    assert answer["errors"] and all(set(e) == {"message", "field", "help"} for e in answer["errors"])
    if field is not None:
        assert field in [e["field"] for e in answer["errors"]], answer
    assert standin.accepted == [] and standin.counts() == {}


def test_what_the_real_api_accepts_is_accepted(standin) -> None:
    body = _body(
        *[{"to": _to(f"r{i}@mission.example"), "custom_args": {"delivery": str(i)}} for i in range(999)],
        {"to": _to("last@mission.example")},
        send_at=int(time.time()) + 71 * 3600,
    )
    status, _ = _post(standin.url, body, standin.api_key)
    assert status == 202
    assert len(standin.accepted[0].recipients) == 1000 and standin.count("R7@mission.example") == 1


def test_an_address_it_was_told_to_refuse_is_refused_where_it_stands(standin) -> None:
    assert _post(standin.url, {"address": "Bad@Mission.example"}, standin.api_key, "/_standin/refuse")[0] == 204
    status, answer = _post(standin.url, _body({"to": _to(A)}, {"to": _to("b@m.example", "bad@mission.example")}),
                           standin.api_key)  # fmt: skip
    assert status == 400
    assert answer["errors"][0]["field"] == "personalizations.1.to.1.email"
    assert _post(standin.url, _body(), standin.api_key)[0] == 202  # the others still go
    assert standin.personalizations == 1


@pytest.mark.parametrize("key", [None, "SG.wrong"])
def test_requests_without_the_key_are_refused(standin, key) -> None:
    status, answer = _post(standin.url, _body(), key)
    assert status == 401 and answer["errors"][0]["message"]
    assert standin.accepted == []


def test_a_body_that_is_not_json_is_refused(standin) -> None:
    status, _ = _post(standin.url, b"{not json", standin.api_key)
    assert status == 400


def test_the_standin_runs_as_a_process_with_a_pidfile(contract, tmp_path) -> None:
    pidfile, key = tmp_path / "standin.pid", "SG.process-key"
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.sendgrid_standin", "--port", "0", "--pidfile", str(pidfile), "--api-key", key],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url, printed_key = process.stdout.readline().split()
        assert printed_key == key and int(pidfile.read_text()) == process.pid
        assert _post(url, {"kind": "status", "status": 503}, key, "/_standin/faults")[0] == 204
        backend = SendGridBackend(key, host=url, timeout=5)
        message = Message(
            to=["proc@mission.example"], subject="Hello", text="Excellency,", sender="l@coalition.example"
        )
        assert backend.send(message).retryable
        assert backend.send(message).ok
        counts = urllib.request.Request(url + "/_standin/accepted", headers={"Authorization": f"Bearer {key}"})  # noqa: S310
        with urllib.request.urlopen(counts, timeout=5) as response:  # noqa: S310 - a local URL
            assert json.loads(response.read()) == {
                "requests": 2, "accepted": 1, "personalizations": 1, "counts": {"proc@mission.example": 1}
            }  # fmt: skip
    finally:
        os.kill(process.pid, signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        process.stdout.close()
    assert not pidfile.exists()
