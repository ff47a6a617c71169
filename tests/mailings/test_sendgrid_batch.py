"""Batches: one ``mail/send`` request for up to 1,000 recipients, each in a personalization of
its own, against the contract stand-in; and the same batches through the outbox and SMTP backends,
which send each recipient's message on its own."""

from __future__ import annotations

import math
import time
from email import policy
from email.parser import BytesParser

import pytest

from campaign.mailings.backends import (
    MAX_BATCH,
    Batch,
    BatchRecipient,
    HeaderInjectionError,
    OutboxBackend,
    SendResult,
    SMTPBackend,
    check_batch,
)
from campaign.mailings.sendgrid import batch_body
from tests import sendgrid_contract
from tests.mailings.smtp_sink import Sink, running

UNSUBSCRIBE = "https://coalition.example/alerts/unsubscribe/"


def _recipient(n: int, **overrides: object) -> BatchRecipient:
    fields: dict = {
        "address": f"supporter{n:04d}@example.org",
        "substitutions": {"-name-": f"Supporter {n}", "-link-": f"{UNSUBSCRIBE}t{n}"},
        "custom_args": {"alert_delivery": str(n)},
        "headers": {"List-Unsubscribe": f"<{UNSUBSCRIBE}t{n}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
    }
    fields.update(overrides)
    return BatchRecipient(**fields)


def _batch(count: int = 3, recipients: list[BatchRecipient] | None = None, **overrides: object) -> Batch:
    fields: dict = {
        "subject": "New open letter: protect civilians, -name-",
        "text": "Dear -name-,\n\nA new letter is open for signatures.\n\nUnsubscribe: -link-",
        "html": '<p>Dear -name-,</p><p>A new letter is open.</p><p><a href="-link-">Unsubscribe</a></p>',
        "sender": "Civilian Shield Coalition <alerts@coalition.example>",
        "recipients": recipients if recipients is not None else [_recipient(n) for n in range(count)],
        "reply_to": "Secretariat <secretariat@coalition.example>",
        "headers": {"X-Demarche-Alert": "12"},
        "categories": ("alert", "alert-12"),
    }
    fields.update(overrides)
    return Batch(**fields)


def _assert_valid(body: dict) -> None:
    assert sendgrid_contract.schema_problems(body) == []
    assert sendgrid_contract.limits(body, time.time()) == []


def _outcome(result: SendResult) -> tuple[bool, bool, bool]:
    return result.ok, result.retryable, result.uncertain


# --- what is sent ------------------------------------------------------------------------------


def test_a_batch_is_one_request_with_a_personalization_per_recipient(standin, sendgrid_backend) -> None:
    results = sendgrid_backend.send_batch(_batch(3))

    [accepted] = standin.accepted
    assert results == [SendResult(ok=True, message_id=accepted.message_id)] * 3
    body = accepted.body
    _assert_valid(body)
    assert body["personalizations"][1] == {
        "to": [{"email": "supporter0001@example.org"}],
        "custom_args": {"alert_delivery": "1"},
        "headers": {"List-Unsubscribe": f"<{UNSUBSCRIBE}t1>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
        "substitutions": {"-name-": "Supporter 1", "-link-": f"{UNSUBSCRIBE}t1"},
    }
    assert [p["to"][0]["email"] for p in accepted.personalizations] == [
        f"supporter000{n}@example.org" for n in range(3)
    ]
    assert body["subject"] == "New open letter: protect civilians, -name-"  # SendGrid substitutes
    assert [part["type"] for part in body["content"]] == ["text/plain", "text/html"]
    assert body["from"] == {"email": "alerts@coalition.example", "name": "Civilian Shield Coalition"}
    assert body["reply_to"] == {"email": "secretariat@coalition.example", "name": "Secretariat"}
    assert body["headers"] == {"X-Demarche-Alert": "12"}
    assert body["categories"] == ["alert", "alert-12"]
    assert body["tracking_settings"]["subscription_tracking"] == {"enable": False}
    assert body["tracking_settings"]["click_tracking"] == {"enable": False, "enable_text": False}
    assert "custom_args" not in body  # the contract's top-level custom_args is mistyped
    assert (standin.requests, standin.personalizations) == (1, 3)


@pytest.mark.parametrize(
    "overrides",
    [
        {"html": None, "reply_to": None, "headers": {}, "categories": ()},
        {"text": "", "html": "<p>-name-</p>"},
        {"recipients": [BatchRecipient("Ada Lovelace <ada@example.org>"), BatchRecipient("b@example.org")]},
        {"subject": "Nouvelle lettre ouverte : « -name- » — 新的公开信", "sender": "Коалиция <c@coalition.example>"},
    ],
    ids=["minimal", "html-only", "bare-recipients", "non-ascii"],
)
def test_every_batch_body_meets_the_contract(standin, sendgrid_backend, overrides) -> None:
    batch = _batch(**overrides)
    _assert_valid(batch_body(batch))
    assert all(result.ok for result in sendgrid_backend.send_batch(batch))
    _assert_valid(standin.accepted[0].body)


def test_1000_recipients_go_in_one_request(standin, sendgrid_backend) -> None:
    results = sendgrid_backend.send_batch(_batch(MAX_BATCH))
    assert len(results) == MAX_BATCH and all(result.ok for result in results)
    assert (standin.requests, standin.personalizations) == (1, MAX_BATCH)
    assert set(standin.counts().values()) == {1}
    assert standin.accepted[0].personalizations[999]["substitutions"]["-name-"] == "Supporter 999"


def test_a_prepared_batch_is_checked_at_once_and_sent_only_when_called(standin, sendgrid_backend) -> None:
    with pytest.raises(ValueError, match="at most 1000 recipients"):
        sendgrid_backend.prepare_batch(_batch(MAX_BATCH + 1))
    send = sendgrid_backend.prepare_batch(_batch(5))
    assert standin.requests == 0
    results = send()
    assert standin.requests == 1
    assert [r.message_id for r in results] == [standin.accepted[0].message_id] * 5
    assert standin.accepted[0].body == batch_body(_batch(5))


def test_1001_recipients_are_refused_before_sending(standin, sendgrid_backend) -> None:
    with pytest.raises(ValueError, match="at most 1000 recipients"):
        sendgrid_backend.send_batch(_batch(MAX_BATCH + 1))
    assert standin.requests == 0


@pytest.mark.parametrize(
    "second", ["supporter0000@example.org", "SUPPORTER0000@Example.ORG", "Someone <supporter0000@example.org>"]
)
def test_a_repeated_address_is_refused_before_sending(standin, sendgrid_backend, second) -> None:
    batch = _batch(recipients=[_recipient(0), _recipient(1), _recipient(2, address=second)])
    with pytest.raises(ValueError, match="twice"):
        sendgrid_backend.send_batch(batch)
    assert standin.requests == 0


def test_an_empty_batch_sends_nothing(standin, sendgrid_backend) -> None:
    assert sendgrid_backend.send_batch(_batch(0)) == []
    assert standin.requests == 0


def test_a_batch_without_any_body_is_refused_before_sending(standin, sendgrid_backend) -> None:
    results = sendgrid_backend.send_batch(_batch(2, text="", html=None))
    assert [_outcome(result) for result in results] == [(False, False, False)] * 2
    assert standin.requests == 0


@pytest.mark.parametrize(
    ("recipient", "overrides"),
    [
        ({"headers": {"List-Unsubscribe": "<https://x.example/u>\r\nBcc: victim@example.org"}}, {}),
        ({"headers": {"List-Unsubscribe\r\nBcc": "victim@example.org"}}, {}),
        ({"custom_args": {"alert_delivery": "7\n"}}, {}),
        ({"substitutions": {"-name-": "Ada\r\nBcc: victim@example.org"}}, {}),  # -name- is in the subject
        ({"address": "a@example.org\r\nBcc: victim@example.org"}, {}),
        ({}, {"subject": "Alert\r\nBcc: victim@example.org"}),
        ({}, {"headers": {"X-Note": "one\u2028two"}}),
        ({}, {"categories": ("alert\n",)}),
        ({}, {"sender": "Coalition\r\n <alerts@coalition.example>"}),
    ],
)
def test_line_breaks_are_refused_before_anything_is_sent(standin, sendgrid_backend, recipient, overrides) -> None:
    batch = _batch(recipients=[_recipient(0), _recipient(1, **recipient)], **overrides)
    with pytest.raises(HeaderInjectionError, match="line break"):
        sendgrid_backend.send_batch(batch)
    assert standin.requests == 0


def test_a_line_break_substituted_into_the_body_only_is_fine(standin, sendgrid_backend) -> None:
    recipient = _recipient(0, substitutions={"-link-": "https://x.example/u\nsecond line"})
    assert sendgrid_backend.send_batch(_batch(recipients=[recipient]))[0].ok


# --- what each answer means, for every recipient ---------------------------------------------------


def test_a_400_is_split_until_the_refused_address_stands_alone(standin, sendgrid_backend) -> None:
    bad = _recipient(637).address
    standin.refuse(bad)
    results = sendgrid_backend.send_batch(_batch(MAX_BATCH))

    failed = [n for n, result in enumerate(results) if not result.ok]
    assert failed == [637]
    assert _outcome(results[637]) == (False, False, False)
    assert "400" in results[637].error and "Does not contain a valid address" in results[637].error
    assert "personalizations.0.to.0.email" in results[637].error  # the request it stood alone in
    # Each level of halving costs two requests, one refused and one accepted.
    assert standin.requests <= 2 * math.ceil(math.log2(MAX_BATCH)) + 1
    assert standin.personalizations == MAX_BATCH - 1
    assert standin.count(bad) == 0 and set(standin.counts().values()) == {1}
    ids = {result.message_id for result in results if result.ok}
    assert ids == {accepted.message_id for accepted in standin.accepted}


def test_two_refused_addresses_are_both_found(standin, sendgrid_backend) -> None:
    for n in (3, 90):
        standin.refuse(_recipient(n).address)
    results = sendgrid_backend.send_batch(_batch(100))
    assert [n for n, result in enumerate(results) if not result.ok] == [3, 90]
    assert standin.personalizations == 98


def test_a_400_naming_only_batch_wide_fields_is_not_split(standin, sendgrid_backend) -> None:
    standin.fail(400, error_field="from.email")
    results = sendgrid_backend.send_batch(_batch(50))
    assert {_outcome(result) for result in results} == {(False, False, False)}
    assert "from.email" in results[0].error
    assert standin.requests == 1


def test_a_429_on_a_batch_makes_every_recipient_retryable(standin, sendgrid_backend) -> None:
    standin.rate_limit(reset_in=30)
    results = sendgrid_backend.send_batch(_batch(20))
    assert {_outcome(result) for result in results} == {(False, True, False)}
    assert all(28 <= result.retry_after <= 31 for result in results)
    assert standin.accepted == []


def test_a_429_while_splitting_holds_back_the_other_half(standin, sendgrid_backend) -> None:
    """The first half is refused 429: the second waits with it instead of being sent now."""
    standin.refuse(_recipient(1).address)
    standin.fail(400)  # the whole batch; then the first half meets the rate limit
    standin.rate_limit(reset_in=30)
    results = sendgrid_backend.send_batch(_batch(8))
    assert {_outcome(result) for result in results} == {(False, True, False)}
    assert standin.requests == 2 and standin.accepted == []


@pytest.mark.parametrize("status", [500, 502, 504])
def test_a_gateway_failure_on_a_batch_makes_every_recipient_uncertain(standin, sendgrid_backend, status) -> None:
    standin.fail(status, accept=True)
    results = sendgrid_backend.send_batch(_batch(10))
    assert {_outcome(result) for result in results} == {(False, False, True)}
    assert standin.personalizations == 10


def test_a_dropped_connection_after_a_batch_makes_every_recipient_uncertain(standin, sendgrid_backend) -> None:
    standin.drop()
    results = sendgrid_backend.send_batch(_batch(10))
    assert {_outcome(result) for result in results} == {(False, False, True)}
    assert standin.requests == 1 and set(standin.counts().values()) == {1}  # it was in fact accepted


# --- the stand-in, on what only batches carry -------------------------------------------------------


def test_the_standin_refuses_oversized_substitutions(standin, sendgrid_backend) -> None:
    recipient = _recipient(0, substitutions={"-name-": "x" * 10_001})
    result = sendgrid_backend.send_batch(_batch(recipients=[recipient]))[0]
    assert _outcome(result) == (False, False, False)
    assert "personalizations.0.substitutions" in result.error


# --- the outbox and SMTP backends ------------------------------------------------------------------


def test_the_outbox_writes_each_recipient_their_own_message(tmp_path) -> None:
    box = OutboxBackend(str(tmp_path / "outbox"))
    results = box.send_batch(_batch(3))
    assert all(result.ok for result in results) and len(set(box.names())) == 3
    for n, result in enumerate(results):
        mime = BytesParser(policy=policy.default).parsebytes(box.path_for(result.message_id).read_bytes())
        assert mime["To"] == f"supporter000{n}@example.org"
        assert mime["Subject"] == f"New open letter: protect civilians, Supporter {n}"
        assert mime["List-Unsubscribe"] == f"<{UNSUBSCRIBE}t{n}>"
        assert mime["X-Demarche-Alert"] == "12"
        text = mime.get_body(("plain",)).get_content()
        assert f"Dear Supporter {n}," in text and f"{UNSUBSCRIBE}t{n}" in text
        assert f'href="{UNSUBSCRIBE}t{n}"' in mime.get_body(("html",)).get_content()


@pytest.mark.parametrize(
    ("batch", "error"),
    [
        (_batch(MAX_BATCH + 1), ValueError),
        (_batch(recipients=[_recipient(0), _recipient(1, address="Supporter0000@example.org")]), ValueError),
        (_batch(recipients=[_recipient(0), _recipient(1, headers={"X-Note": "a\r\nb"})]), HeaderInjectionError),
    ],
    ids=["1001", "repeated", "line-break"],
)
def test_the_outbox_refuses_the_same_batches_before_writing_any(tmp_path, batch, error) -> None:
    box = OutboxBackend(str(tmp_path / "outbox"))
    with pytest.raises(error):
        box.send_batch(batch)
    assert box.names() == []
    with pytest.raises(error):
        check_batch(batch)


def test_smtp_sends_each_recipient_their_own_message_on_one_connection() -> None:
    sink = Sink()
    with running(sink) as port:
        results = SMTPBackend("127.0.0.1", port, timeout=5).send_batch(_batch(4))
    assert all(result.ok for result in results)
    assert len(sink.transports) == 1
    for n in range(4):
        [mime] = sink.messages_to(f"supporter000{n}@example.org")
        assert mime["Subject"] == f"New open letter: protect civilians, Supporter {n}"
        assert mime["List-Unsubscribe"] == f"<{UNSUBSCRIBE}t{n}>"
        assert f"Dear Supporter {n}," in mime.get_body(("plain",)).get_content()


def test_smtp_refuses_a_bad_batch_before_connecting() -> None:
    sink = Sink()
    batch = _batch(recipients=[_recipient(0), _recipient(1, custom_args={"id": "1\n"})])
    with running(sink) as port, pytest.raises(HeaderInjectionError):
        SMTPBackend("127.0.0.1", port, timeout=5).send_batch(batch)
    assert sink.received == [] and sink.transports == []
