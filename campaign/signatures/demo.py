"""Demo signatures: the member representative signs the demo letter; two outside
organisations sign on publicly, one approved and one waiting in the moderation queue."""

from __future__ import annotations

import click

from campaign.auth.models import User
from campaign.extensions import db
from campaign.letters.services import get_letter
from campaign.signatures import moderation, public_signon, services
from campaign.signatures.models import Signature

DEMO_LETTER = "protect-civilians-ministerial-2027"

# (organisation, country, website, signer, title, email, approve?)
OUTSIDE = [
    ("Andean Peace Institute", "PE", "https://api-andes.example.org", "Rosa Quispe", "Director",
     "rosa.quispe@api-andes.example.org", True),
    ("Baltic Humanitarian Law Society", "LT", "https://bhls.example.org", "Jonas Petrauskas", "Chair",
     "chair@bhls.example.org", False),
]  # fmt: skip


def load_signatures(member: User | None, coordinator: User | None) -> None:
    letter = get_letter(DEMO_LETTER)
    if letter is None or services.why_not_signable(letter):
        click.echo("Signatures: the demo letter is not open for signatures; none added.")
        return
    if db.session.scalar(db.select(db.func.count()).select_from(Signature).where(Signature.letter_id == letter.id)):
        click.echo("Signatures: already there.")
        return
    if member is not None:
        services.sign_as_member(letter, member, member.name, "Executive Director")
    for name, country, website, signer, title, email, approve in OUTSIDE:
        data = public_signon.PublicSignOn(name, country, website, signer, title, email, True)
        signed = public_signon.start(letter, data, public_signon.consent_text(letter))
        signature = public_signon.verify(public_signon.verification_token(signed))
        if approve:
            moderation.approve(signature, coordinator)
    db.session.commit()
    click.echo("Signatures: 2 approved on the demo letter, 1 awaiting approval at /admin/signatures.")
