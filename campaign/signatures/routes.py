"""Members' pages: open letters to sign, signing in one step, withdrawing, the organisation's history."""

from __future__ import annotations

import sqlalchemy as sa
from flask import abort, flash, redirect, render_template, url_for
from flask_login import current_user
from werkzeug.wrappers import Response

from campaign.auth.forms import ConfirmForm
from campaign.db import utcnow, writes_on_post
from campaign.extensions import db
from campaign.letters import services as letters
from campaign.letters.models import Letter, LetterStatus
from campaign.security import roles_required
from campaign.signatures import bp, services
from campaign.signatures.forms import MemberSignForm
from campaign.signatures.models import Signature

#: Representatives of member organisations only: coordinators sign through nobody's account.
members_required = roles_required("member")


def _letter_or_404(slug: str) -> Letter:
    return letters.public_letter(slug) or abort(404)


def _own_signature(letter: Letter) -> Signature | None:
    return services.signature_of(letter, current_user.organisation)


@bp.route("/sign")
@members_required
def open_letters() -> str:
    now = utcnow()
    found = db.session.scalars(
        letters.public_letters(now)
        .where(Letter.status == LetterStatus.OPEN.value)
        .where(sa.or_(Letter.signature_deadline.is_(None), Letter.signature_deadline > now))
    ).all()
    organisation = current_user.organisation
    rows = [(letter, services.signature_of(letter, organisation)) for letter in found]
    return render_template("signatures/member/letters.html", rows=rows, organisation=organisation)


@bp.route("/sign/history")
@members_required
def history() -> str:
    organisation = current_user.organisation
    signatures = services.signatures_of_organisation(organisation)
    return render_template("signatures/member/history.html", signatures=signatures, organisation=organisation)


@bp.route("/sign/<slug>", methods=["GET", "POST"])
@members_required
@writes_on_post
def sign_letter(slug: str) -> str | Response:
    letter = _letter_or_404(slug)
    signature = _own_signature(letter)
    form = MemberSignForm(data={"signer_name": current_user.name})
    if form.validate_on_submit():
        try:
            signature = services.sign_as_member(letter, current_user, form.signer_name.data, form.signer_title.data)
        except services.SignatureError as exc:
            db.session.rollback()
            if not services.why_not_signable(letter):  # else the page says why, once
                flash(str(exc), "error")
        else:
            db.session.commit()
            flash(f"{signature.organisation_name} has signed {letter.title!r}.", "success")
            return redirect(url_for("signatures.sign_letter", slug=letter.slug))
    return render_template(
        "signatures/member/letter.html",
        letter=letter,
        revision=letter.published_revision,
        signature=signature,
        live=signature is not None and signature.status in services.LIVE,
        closed_reason=services.why_not_signable(letter),
        form=form,
        confirm=ConfirmForm(),
    )


@bp.route("/sign/<slug>/withdraw", methods=["GET", "POST"])
@members_required
@writes_on_post
def withdraw(slug: str) -> str | Response:
    """GET asks to confirm; POST withdraws the organisation's signature."""
    letter = _letter_or_404(slug)
    signature = _own_signature(letter)
    if signature is None or signature.status not in services.LIVE:
        flash("Your organisation has no current signature of this letter.", "info")
        return redirect(url_for("signatures.sign_letter", slug=letter.slug))
    if services.why_not_signable(letter):  # the letter's page says why
        flash("Signatures of this letter can no longer be withdrawn.", "info")
        return redirect(url_for("signatures.sign_letter", slug=letter.slug))
    form = ConfirmForm()
    if form.validate_on_submit():
        try:
            services.withdraw(signature, current_user)
        except services.SignatureError as exc:
            db.session.rollback()
            flash(str(exc), "error")
        else:
            db.session.commit()
            flash(f"{signature.organisation_name}'s signature is withdrawn. It stays in your history.", "success")
        return redirect(url_for("signatures.sign_letter", slug=letter.slug))
    return render_template("signatures/member/withdraw.html", letter=letter, signature=signature, form=form)


@bp.route("/sign/<slug>/reconfirm", methods=["POST"])
@members_required
@writes_on_post
def reconfirm(slug: str) -> Response:
    letter = _letter_or_404(slug)
    signature = _own_signature(letter)
    if signature is None:
        abort(404)
    if ConfirmForm().validate_on_submit():
        try:
            services.reconfirm(signature, current_user)
        except services.SignatureError as exc:
            db.session.rollback()
            flash(str(exc), "error")
        else:
            db.session.commit()
            flash("Thank you: your signature now stands for the current text.", "success")
    return redirect(url_for("signatures.sign_letter", slug=letter.slug))
