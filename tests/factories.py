"""Test data, made through the same services the application uses."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import sqlalchemy as sa

from campaign.auth import services, twofactor
from campaign.auth.models import Organisation, User
from campaign.extensions import db

PASSWORD = "correct horse battery staple"
_counter = itertools.count(1)


@contextmanager
def statements(app: object) -> Iterator[list[str]]:
    """The SQL statements the app's database receives inside the block, in order."""
    seen: list[str] = []

    def keep(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        seen.append(statement)

    with app.app_context():
        engine = db.engine
    sa.event.listen(engine, "before_cursor_execute", keep)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", keep)


def organisation(name: str | None = None, country: str = "FR", member: bool = True, **kwargs: object) -> Organisation:
    n = next(_counter)
    org = services.create_organisation(
        services.OrganisationData(name=name or f"Test Organisation {n}", country=country, member=member, **kwargs)
    )
    db.session.commit()
    return org


def user(
    role: str = "member",
    email: str | None = None,
    organisation_: Organisation | None = None,
    password: str | None = PASSWORD,
    two_factor: bool = True,
) -> User:
    n = next(_counter)
    if role == "member" and organisation_ is None:
        organisation_ = organisation()
    account = services.create_user(
        email or f"{role}{n}@example.org", f"Test {role.title()} {n}", role, organisation_, password=password
    )
    if two_factor and account.needs_two_factor:
        twofactor.enable(account, twofactor.new_secret())
    db.session.commit()
    return account


@dataclass(frozen=True)
class Account:
    """What tests need of a user, usable outside the session that made it."""

    id: int
    email: str
    role: str
    totp_secret: str | None
    organisation_id: int | None
    organisation_slug: str | None

    @classmethod
    def of(cls, user: User) -> Account:
        org = user.organisation
        return cls(user.id, user.email, user.role, user.totp_secret, user.organisation_id, org.slug if org else None)


class Outbox:
    """The messages the outbox backend wrote, parsed."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def clear(self) -> None:
        if self.directory.is_dir():
            for path in self.directory.glob("*.eml"):
                path.unlink()

    def messages(self) -> list[EmailMessage]:
        if not self.directory.is_dir():
            return []
        return [
            BytesParser(policy=policy.default).parsebytes(path.read_bytes())
            for path in sorted(self.directory.glob("*.eml"))
        ]

    def only(self) -> EmailMessage:
        found = self.messages()
        assert len(found) == 1, f"expected one message, found {len(found)}"
        return found[0]


def text_of(message: EmailMessage) -> str:
    return message.get_body(preferencelist=("plain",)).get_content()


def drain_jobs(rounds: int = 200) -> int:
    """Run every queued job now, as workers would once each falls due (jobs a job schedules
    too, round after round); returns how many ran.  Fails when jobs keep coming."""
    from campaign import queue
    from campaign.db import utcnow
    from campaign.queue import Job

    ran = 0
    for _ in range(rounds):
        db.session.execute(sa.update(Job).where(Job.status == "queued").values(due_at=utcnow()))
        db.session.commit()
        now_ran = queue.run_due()
        if not now_ran:
            return ran
        ran += now_ran
    raise AssertionError("jobs keep coming")
