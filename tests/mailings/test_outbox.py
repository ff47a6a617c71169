"""Building MIME messages safely, the outbox backend and its admin pages."""

from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest

from campaign.mailings import backends
from campaign.mailings.backends import Attachment, HeaderInjectionError, Message, OutboxBackend, build_mime


def _message(**changes: object) -> Message:
    fields: dict[str, object] = {
        "to": ["Ada Contact <ada@mission.example.org>"],
        "subject": "An open letter",
        "text": "Dear Ambassador,\n\nPlease read our letter.\n",
        "html": "<p>Dear Ambassador,</p><p>Please read our letter.</p>",
        "sender": "Civilian Shield <secretariat@shield.example.org>",
        "reply_to": "replies@shield.example.org",
    }
    fields.update(changes)
    return Message(**fields)


def _parse(raw: bytes):
    return BytesParser(policy=policy.default).parsebytes(raw)


def _plain(parsed) -> str:
    """The text part, with the CRLF line ends of the wire turned back into newlines."""
    return parsed.get_body(preferencelist=("plain",)).get_content().replace("\r\n", "\n")


def _header_block(raw: bytes) -> bytes:
    return raw.split(b"\r\n\r\n", 1)[0]


# --- build_mime ----------------------------------------------------------------


def test_build_mime_makes_a_complete_message():
    mime = build_mime(
        _message(
            headers={"X-Demarche-Delivery": "42"},
            attachments=[Attachment("letter.pdf", b"%PDF-1.7", "application/pdf")],
        )
    )
    parsed = _parse(mime.as_bytes())
    assert parsed["Subject"] == "An open letter"
    assert parsed["To"].addresses[0].addr_spec == "ada@mission.example.org"
    assert parsed["From"].addresses[0].display_name == "Civilian Shield"
    assert parsed["Reply-To"].addresses[0].addr_spec == "replies@shield.example.org"
    assert parsed["X-Demarche-Delivery"] == "42"
    assert parsed["Message-ID"].strip().startswith("<") and parsed["Message-ID"].endswith("@demarche.invalid>")
    assert parsed["Date"].datetime.tzinfo is not None
    assert _plain(parsed) == "Dear Ambassador,\n\nPlease read our letter.\n"
    assert "<p>Dear Ambassador,</p>" in parsed.get_body(preferencelist=("html",)).get_content()
    [attachment] = list(parsed.iter_attachments())
    assert (attachment.get_filename(), attachment.get_content_type()) == ("letter.pdf", "application/pdf")
    assert attachment.get_content() == b"%PDF-1.7"


def test_message_ids_are_unique():
    assert build_mime(_message())["Message-ID"] != build_mime(_message())["Message-ID"]


@pytest.mark.parametrize(
    "changes",
    [
        {"subject": "Hello\r\nBcc: victim@example.org"},
        {"subject": "Hello\nBcc: victim@example.org"},
        {"subject": "Hello\rBcc: victim@example.org"},
        {"subject": "Hello\r\n"},
        {"to": ['"Ada\r\nBcc: victim@example.org" <ada@mission.example.org>']},
        {"to": ["ok@example.org", "Eve <eve@example.org>\nBcc: victim@example.org"]},
        {"sender": "Shield\r\nBcc: victim@example.org <s@shield.example.org>"},
        {"sender": '"Shield\n" <s@shield.example.org>'},
        {"reply_to": "replies@shield.example.org\r\nBcc: victim@example.org"},
        {"headers": {"X-Ok\r\nBcc": "victim@example.org"}},
        {"headers": {"X-Ok\n": "value"}},
        {"headers": {"X-Delivery": "42\r\nBcc: victim@example.org"}},
        {"headers": {"X-Delivery": "42\n"}},
        {"attachments": [Attachment("letter.pdf\r\nBcc: victim@example.org", b"%PDF")]},
        {"attachments": [Attachment("letter\n.pdf", b"%PDF")]},
    ],
)
def test_build_mime_refuses_line_breaks_in_headers(changes):
    with pytest.raises(HeaderInjectionError):
        build_mime(_message(**changes))


@pytest.mark.parametrize(
    "changes",
    [
        {"subject": "Hello\x0bBcc: victim@example.org"},
        {"subject": "Hello\x0cworld"},
        {"subject": "Hello\u2028Bcc: victim@example.org"},
        {"subject": "Hello\x85world"},
        {"to": ['"Eve\x0bBcc" <eve@example.org>']},
        {"headers": {"X-Delivery": "42\u2029more"}},
        {"attachments": [Attachment("letter\x0b.pdf", b"%PDF")]},
        {"attachments": [Attachment("letter\u2028.pdf", b"%PDF")]},
    ],
)
def test_build_mime_refuses_other_line_breaks(changes):
    with pytest.raises(HeaderInjectionError, match="line break"):
        build_mime(_message(**changes))


@pytest.mark.parametrize("address", ["no-at-sign", "", "Name Only <>"])
def test_build_mime_refuses_addresses_without_a_domain(address):
    with pytest.raises(ValueError, match="not an email address"):
        build_mime(_message(to=[address]))


@pytest.mark.parametrize("name", ["Zoë Ñúñez", "Владимир Иванов", "李雷", "Amélie O'Neill", "محمد"])
@pytest.mark.parametrize("where", ["to", "sender", "reply_to"])
def test_non_ascii_display_names_are_encoded_and_decode_exactly(name, where):
    address = f"{name} <person@example.org>"
    changes = {"to": [address]} if where == "to" else {where: address}
    raw = build_mime(_message(**changes)).as_bytes()
    header = _header_block(raw)
    assert all(byte < 128 for byte in header), header
    assert b"=?utf-8?" in header
    header_name = {"to": "To", "sender": "From", "reply_to": "Reply-To"}[where]
    [parsed] = _parse(raw)[header_name].addresses
    assert (parsed.display_name, parsed.addr_spec) == (name, "person@example.org")


def test_non_ascii_subject_and_attachment_name_round_trip():
    subject = "Lettre ouverte — Conseil de sécurité, 安理会"
    mime = build_mime(_message(subject=subject, attachments=[Attachment("lettre-sécurité.pdf", b"%PDF")]))
    raw = mime.as_bytes()
    assert all(byte < 128 for byte in _header_block(raw))
    parsed = _parse(raw)
    assert parsed["Subject"] == subject
    assert next(parsed.iter_attachments()).get_filename() == "lettre-sécurité.pdf"


def test_several_recipients_stay_separate():
    mime = build_mime(_message(to=["Ada <ada@example.org>", '"Doe, John" <john@example.org>']))
    assert backends.recipients_of(mime) == ["ada@example.org", "john@example.org"]


# --- the outbox backend --------------------------------------------------------


def test_outbox_writes_parseable_messages(tmp_path):
    box = OutboxBackend(str(tmp_path / "outbox"))
    result = box.send(_message(subject="Zoë's letter"))
    assert result.ok and result.message_id
    path = box.path_for(result.message_id)
    assert path == tmp_path / "outbox" / result.message_id
    parsed = _parse(path.read_bytes())
    assert parsed["Subject"] == "Zoë's letter"
    assert _plain(parsed) == "Dear Ambassador,\n\nPlease read our letter.\n"
    assert [p.name for p in (tmp_path / "outbox").iterdir()] == [result.message_id]  # no temporary file left


def test_outbox_refuses_a_bad_message_and_writes_nothing(tmp_path):
    box = OutboxBackend(str(tmp_path / "outbox"))
    with pytest.raises(HeaderInjectionError):
        box.send(_message(subject="x\r\nBcc: victim@example.org"))
    assert box.names() == []


def test_outbox_lists_newest_first(tmp_path):
    box = OutboxBackend(str(tmp_path))
    assert box.names() == []
    sent = [box.send(_message(subject=f"message {n}")).message_id for n in range(5)]
    assert box.names() == list(reversed(sent))
    (tmp_path / "notes.txt").write_text("not a message")
    (tmp_path / "20250101T000000-zzzzzzzzzzzz.eml").write_text("not one of ours")
    assert box.names() == list(reversed(sent))


def test_outbox_of_a_missing_folder_is_empty(tmp_path):
    box = OutboxBackend(str(tmp_path / "never-made"))
    assert box.names() == []
    assert box.path_for("20250101T000000-0123456789ab.eml") is None


@pytest.mark.parametrize(
    "name",
    [
        "../x.eml",
        "..%2fx.eml",
        "..%2f",
        "..",
        ".",
        "",
        "/etc/passwd",
        "{outside}",
        "{valid}/../{valid}",
        "../{valid}",
        "{valid}\x00.txt",
        "{valid}.txt",
        "{valid}\n",
        "sub/{valid}",
        "20250101T000000-0123456789ab.eml",  # well-formed, but not there
    ],
)
def test_path_for_refuses_anything_but_a_stored_message(tmp_path, name):
    box = OutboxBackend(str(tmp_path / "outbox"))
    valid = box.send(_message()).message_id
    outside = tmp_path / "20250101T000000-0123456789ab.eml"
    outside.write_bytes(b"Subject: secret\r\n\r\nsecret")
    assert box.path_for(name.format(valid=valid, outside=str(outside))) is None


def test_outbox_backend_is_the_default(app):
    backend = app.extensions["mail_backend"]
    assert isinstance(backend, OutboxBackend)
    assert backend.directory == Path(app.config["OUTBOX_DIR"])


# --- admin pages ---------------------------------------------------------------


@pytest.fixture
def stored(app, outbox):
    """Two messages in the app's outbox; returns their names, newest first."""
    with app.app_context():
        backend = app.extensions["mail_backend"]
        older = backend.send(_message(subject="First letter", to=["Zoë Ñúñez <zoe@example.org>"])).message_id
        newer = backend.send(
            _message(
                subject="Second letter <b>bold</b>",
                text="Plain <script>alert(1)</script> text",
                html="<p>Hello</p><script>alert(1)</script>",
                attachments=[Attachment("letter.pdf", b"%PDF-1.7", "application/pdf")],
            )
        ).message_id
    return [newer, older]


def test_outbox_page_lists_messages(client, auth, admin, stored):
    auth.login(admin)
    response = client.get("/admin/outbox")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "2 messages" in page
    assert page.index(stored[0]) < page.index(stored[1])
    assert "Second letter &lt;b&gt;bold&lt;/b&gt;" in page
    assert "Zoë Ñúñez" in page


def test_outbox_page_when_empty(client, auth, admin, outbox):
    auth.login(admin)
    assert "The outbox is empty." in client.get("/admin/outbox").get_data(as_text=True)


def test_outbox_message_page_shows_headers_text_and_attachments(client, auth, admin, stored):
    auth.login(admin)
    response = client.get(f"/admin/outbox/{stored[0]}")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "Plain &lt;script&gt;alert(1)&lt;/script&gt; text" in page
    assert "<script>" not in page
    assert "letter.pdf (application/pdf)" in page
    assert f'href="/admin/outbox/{stored[0]}/html"' in page
    assert "ada@mission.example.org" in page


def test_outbox_html_part_is_sandboxed(client, auth, admin, stored):
    auth.login(admin)
    response = client.get(f"/admin/outbox/{stored[0]}/html")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    policy_ = response.headers["Content-Security-Policy"]
    directives = [d.strip() for d in policy_.split(";")]
    assert "sandbox" in directives
    assert "default-src 'none'" in directives
    assert "script-src" not in policy_
    assert "<p>Hello</p>" in response.get_data(as_text=True)


def test_message_without_an_html_part(app, client, auth, admin, outbox):
    with app.app_context():
        name = app.extensions["mail_backend"].send(_message(html=None)).message_id
    auth.login(admin)
    assert "View the HTML part" not in client.get(f"/admin/outbox/{name}").get_data(as_text=True)
    assert client.get(f"/admin/outbox/{name}/html").status_code == 404


@pytest.mark.parametrize(
    "name",
    ["20250101T000000-0123456789ab.eml", "nothing-here", "..%2f..%2fetc%2fpasswd", "%2e%2e", "x.eml"],
)
def test_unknown_outbox_messages_are_404(client, auth, admin, stored, name):
    auth.login(admin)
    assert client.get(f"/admin/outbox/{name}").status_code == 404
    assert client.get(f"/admin/outbox/{name}/html").status_code == 404


@pytest.mark.parametrize("role", ["member", "coordinator"])
def test_only_admins_read_the_outbox(client, auth, make_account, stored, role):
    auth.login(make_account(role))
    for url in ("/admin/outbox", f"/admin/outbox/{stored[0]}", f"/admin/outbox/{stored[0]}/html"):
        response = client.get(url)
        assert response.status_code == 403, url
        assert "Second letter" not in response.get_data(as_text=True)


def test_strangers_are_sent_to_sign_in(client, stored):
    response = client.get(f"/admin/outbox/{stored[0]}")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")
