"""Coordinators invite member organisations to sign a letter, and see who was invited, reminded, signed."""

from __future__ import annotations

import sqlalchemy as sa
from flask import abort, flash, redirect, render_template, url_for
from flask_login import current_user
from werkzeug.wrappers import Response

from campaign.auth.models import Organisation
from campaign.extensions import db
from campaign.forms import choices
from campaign.letters import services as letters
from campaign.security import staff_required
from campaign.signatures import bp, invitations, services
from campaign.signatures.forms import InviteForm
from campaign.signatures.models import Invitation


@bp.route("/admin/letters/<slug>/invite", methods=["GET", "POST"])
@staff_required
def invite(slug: str) -> str | Response:
    letter = letters.get_letter(slug) or abort(404)
    members = db.session.scalars(
        sa.select(Organisation).where(Organisation.member.is_(True)).order_by(Organisation.name)
    ).all()
    sent = {
        i.organisation_id: i for i in db.session.scalars(sa.select(Invitation).where(Invitation.letter_id == letter.id))
    }
    signed = {org.id: services.signature_of(letter, org) for org in members}
    form = InviteForm()
    # Any member may be sent (a form sent again names those invited since, and is told so);
    # only those not invited are offered.
    form.organisations.choices = choices((str(org.id), org.name) for org in members)
    if form.validate_on_submit():
        wanted = set(form.organisations.data or [])
        chosen = [org for org in members if org.id in wanted or (form.all_members.data and org.id not in sent)]
        if not chosen:
            if form.all_members.data:
                flash("Every member organisation has already been invited.", "info")
            else:
                flash("Choose the organisations to invite, or all members.", "error")
        else:
            try:
                outcome = invitations.invite(letter, chosen, current_user)
            except services.SignatureError as exc:
                db.session.rollback()
                flash(str(exc), "error")
            else:
                db.session.commit()
                services.dispatch_after_commit()
                _flash_outcome(outcome)
                return redirect(url_for("signatures.invite", slug=letter.slug))
    unrepresented = invitations.unrepresented(members)
    form.organisations.choices = choices(
        (str(org.id), f"{org.name} (no representative yet)" if org.id in unrepresented else org.name)
        for org in members
        if org.id not in sent
    )
    return render_template(
        "signatures/invite.html",
        letter=letter,
        form=form,
        members=members,
        invitations=sent,
        signed=signed,
        live=services.LIVE,
        closed_reason=services.why_not_signable(letter),
    )


def _names(organisations: list[Organisation]) -> str:
    """The organisations' names for a sentence: A; A and B; A, B and C."""
    names = [org.name for org in organisations]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _flash_outcome(outcome: invitations.Invited) -> None:
    """Tell the coordinator what happened to each organisation chosen."""
    count = len(outcome.invited)
    if count or not (outcome.already_invited or outcome.signed or outcome.unrepresented):
        flash(f"Invited {count} organisation{'s' if count != 1 else ''}.", "success")
    if outcome.unrepresented:
        it, its = ("it", "its page") if len(outcome.unrepresented) == 1 else ("them", "their pages")
        flash(
            f"Not invited, as no one represents {it} yet: {_names(outcome.unrepresented)}. "
            f"An admin can add a representative on {its} under Organisations; then invite {it} here.",
            "warning",
        )
    if outcome.already_invited:
        were = "was" if len(outcome.already_invited) == 1 else "were"
        flash(f"{_names(outcome.already_invited)} {were} already invited: nobody is invited twice.", "info")
    if outcome.signed:
        has = "has" if len(outcome.signed) == 1 else "have"
        flash(f"{_names(outcome.signed)} {has} already signed.", "info")
