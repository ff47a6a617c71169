"""Public pages: the sign-on form, the email confirmation, and signers' own data."""

from __future__ import annotations

import json

from flask import abort, current_app, redirect, render_template, request, url_for
from flask_wtf import FlaskForm
from werkzeug.wrappers import Response

from campaign import queue
from campaign.db import writes_on_post
from campaign.extensions import db, limiter
from campaign.letters import services as letters
from campaign.letters.models import Letter
from campaign.signatures import bp, public_signon, services
from campaign.signatures.models import SignatureStatus
from campaign.signatures.public_signon import PublicSignOn, SignOnInvalid
from campaign.signatures.services import LIVE, SignatureError, why_not_signable
from campaign.signatures.signon_forms import EraseForm, ReconfirmForm, SignerDataRequestForm, SignOnForm

MESSAGE = "signatures/public/message.html"


def _signon_limit() -> str:
    return current_app.config["SIGNON_RATE_LIMIT"]


def _public_letter(slug: str, text: bool = True) -> Letter:
    letter = letters.public_letter(slug, text=text)
    if letter is None:
        abort(404)
    return letter


def _title(letter: Letter) -> str:
    return letter.published_revision.title if letter.published_revision else letter.title


def _message(title: str, *paragraphs: str, status: int = 200, letter: Letter | None = None) -> tuple[str, int]:
    return render_template(MESSAGE, title=title, paragraphs=paragraphs, letter=letter), status


def _refusal(letter: Letter) -> str | None:
    return why_not_signable(letter) or (public_signon.MEMBERS_ONLY if letter.members_only else None)


def _closed(letter: Letter, reason: str, status: int) -> tuple[str, int]:
    return _message("This letter does not take signatures", reason, status=status, letter=letter)


@bp.route("/letters/<slug>/sign", methods=["GET", "POST"])
@limiter.limit(_signon_limit, methods=["POST"])
@writes_on_post
def sign(slug: str) -> str | Response | tuple[str, int]:
    posted = request.method == "POST"
    letter = _public_letter(slug, text=not posted)
    refusal = _refusal(letter)
    if refusal:
        return _closed(letter, refusal, 409 if posted else 200)
    consent = public_signon.consent_text(letter)
    if not posted:
        return _form_page(letter, SignOnForm(), consent, 200)
    # CSRFProtect checked the token before the view ran; ``public_signon`` checks the fields,
    # so the form object is built only to show them again with an error.
    if request.form.get("homepage"):  # a bot: answer as if it worked, record nothing
        return redirect(url_for("signatures.sign_sent", slug=slug))
    try:
        signed = public_signon.start(letter, PublicSignOn.from_form(request.form), consent)
    except SignOnInvalid as error:
        db.session.rollback()
        form = SignOnForm()
        getattr(form, error.field).errors = [str(error)]
        return _form_page(letter, form, consent, 400)
    except SignatureError as error:
        db.session.rollback()
        return _closed(letter, str(error), 409)
    job_id = public_signon.queue_verification(signed)
    db.session.commit()
    queue.dispatch(job_id)
    return redirect(url_for("signatures.sign_sent", slug=slug))


def _form_page(letter: Letter, form: SignOnForm, consent: str, status: int) -> tuple[str, int]:
    return render_template(
        "signatures/public/sign.html", letter=letter, title=_title(letter), form=form, consent=consent
    ), status


@bp.route("/letters/<slug>/sign/sent")
def sign_sent(slug: str) -> tuple[str, int]:
    letter = _public_letter(slug)
    return _message(
        "Check your email",
        "We have sent a link to the address you gave. Open it within 7 days and press Confirm: "
        "your signature counts only once you confirm it.",
        "The secretariat then reviews it; we write to you when it is decided.",
        "No email? Check your spam folder, or sign again: a new link replaces the first.",
        letter=letter,
    )


def _invalid_link(letter: Letter | None = None) -> tuple[str, int]:
    return _message(
        "This link does not work",
        "The confirmation link is wrong, more than 7 days old, or replaced by a newer one. "
        "Sign the letter again to get a new link.",
        status=404,
        letter=letter,
    )


#: What a confirmation link says once it was used, by the signature's state since.
_ALREADY = {
    SignatureStatus.PENDING_APPROVAL: "The signature of {} is already confirmed. "
    "The secretariat reviews it and writes to you when it is decided.",
    SignatureStatus.APPROVED: "The signature of {} is confirmed and approved: "
    "the organisation is listed with the letter.",
    SignatureStatus.REJECTED: "The signature of {} was not approved; we wrote to you with the reason.",
    SignatureStatus.WITHDRAWN: "The signature of {} was withdrawn.",
}


@bp.route("/letters/<slug>/sign/confirm/<token>", methods=["GET", "POST"])
@limiter.limit(_signon_limit, methods=["POST"])
@writes_on_post
def confirm(slug: str, token: str) -> str | tuple[str, int]:
    """GET only shows a button: link scanners follow links, they do not press buttons."""
    letter = letters.public_letter(slug)
    signature = public_signon.signature_for_token(token)
    if letter is None or signature is None or signature.letter_id != letter.id:
        return _invalid_link(letter)
    if signature.status != SignatureStatus.PENDING_VERIFICATION:
        if signature.verified_at is None:
            return _invalid_link(letter)
        already = _ALREADY[signature.status].format(signature.organisation_name)
        return _message("Already confirmed", already, letter=letter)
    form = FlaskForm()
    if request.method == "POST" and form.validate_on_submit():
        try:
            public_signon.verify(token)
        except SignatureError as error:
            db.session.rollback()
            return _closed(letter, str(error), 409)
        db.session.commit()
        return _message(
            "Thank you",
            f"The signature of {signature.organisation_name} is confirmed: the secretariat will review it "
            "and write to you when it is decided.",
            letter=letter,
        )
    return render_template(
        "signatures/public/confirm.html",
        letter=letter,
        title=_title(letter),
        signature=signature,
        form=form,
        changed=public_signon.text_changed_since_signing(signature),
    )


@bp.route("/letters/<slug>/sign/reconfirm/<token>", methods=["GET", "POST"])
@limiter.limit(_signon_limit, methods=["POST"])
@writes_on_post
def reconfirm_by_link(slug: str, token: str) -> str | tuple[str, int]:
    """After a substantive change, a signer who does not sign in re-confirms or withdraws.
    GET only shows the buttons, as for the confirmation link."""
    letter = letters.public_letter(slug)
    signature = public_signon.signature_to_reconfirm(token)
    if letter is None or signature is None or signature.letter_id != letter.id:
        return _message(
            "This link does not work",
            "The link is wrong, more than 60 days old, or for an earlier text of the letter: "
            "use the link in the newest email we sent you.",
            status=404,
            letter=letter,
        )
    if signature.status not in LIVE or not signature.needs_reconfirmation:
        state = "withdrawn" if signature.status == SignatureStatus.WITHDRAWN else "not awaiting re-confirmation"
        return _message("Nothing to do", f"The signature of {signature.organisation_name} is {state}.", letter=letter)
    form = ReconfirmForm()
    if request.method == "POST" and form.validate_on_submit():
        withdrawing = form.withdraw.data
        try:
            (services.withdraw if withdrawing else services.reconfirm)(signature, "signer")
        except SignatureError as error:
            db.session.rollback()
            return _closed(letter, str(error), 409)
        db.session.commit()
        if withdrawing:
            return _message(
                "Signature withdrawn",
                f"{signature.organisation_name} no longer signs this letter. Its history is kept; "
                "you can sign again while the letter is open.",
                letter=letter,
            )
        message = f"The signature of {signature.organisation_name} now stands for the current text."
        return _message("Thank you", message, letter=letter)
    return render_template(
        "signatures/public/reconfirm.html", letter=letter, title=_title(letter), signature=signature, form=form
    )


# --- signers' own data ---------------------------------------------------------


@bp.route("/letters/signer-data", methods=["GET", "POST"])
@limiter.limit(_signon_limit, methods=["POST"])
@writes_on_post
def signer_data() -> str | tuple[str, int]:
    form = SignerDataRequestForm()
    if form.validate_on_submit():
        public_signon.send_signer_data_link(form.email.data)
        # The same answer whether or not the address signed anything.
        return _message(
            "Check your email",
            "If this address signed any letter here, we have sent it a link to your data. The link works for one day.",
        )
    return render_template("signatures/public/signer_data.html", form=form), 400 if request.method == "POST" else 200


def _signer_email(token: str) -> str:
    email = public_signon.email_for_signer_token(token)
    if email is None:
        abort(404, "This link is wrong or more than a day old. Ask for a new one on the signer data page.")
    return email


@bp.route("/letters/signer-data/<token>")
def signer_data_page(token: str) -> str:
    email = _signer_email(token)
    return render_template(
        "signatures/public/signer_data_page.html",
        email=email,
        token=token,
        signatures=public_signon.signatures_of(email),
        form=EraseForm(),
    )


@bp.route("/letters/signer-data/<token>/export.json")
def signer_data_export(token: str) -> Response:
    data = public_signon.export(_signer_email(token))
    response = current_app.response_class(json.dumps(data, ensure_ascii=False, indent=2), mimetype="application/json")
    response.headers["Content-Disposition"] = 'attachment; filename="my-signature-data.json"'
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/letters/signer-data/<token>/delete", methods=["POST"])
@writes_on_post
def signer_data_erase(token: str) -> str | tuple[str, int]:
    email = _signer_email(token)
    form = EraseForm()
    if not form.validate_on_submit():
        page = render_template(
            "signatures/public/signer_data_page.html",
            email=email,
            token=token,
            signatures=public_signon.signatures_of(email),
            form=form,
        )
        return page, 400
    count = public_signon.erase(email)
    db.session.commit()
    return _message(
        "Your details are deleted",
        f"We deleted your name, title and email address from {count} signature{'s' if count != 1 else ''}. "
        "Signatures not yet approved are withdrawn; approved ones stay listed under the organisation's name.",
    )
