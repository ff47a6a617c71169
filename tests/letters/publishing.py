"""Published letters for the public page, PDF, feed and calendar tests, made through the services."""

# ruff: noqa: RUF001 - letters in Chinese and Russian use their own punctuation and letters

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
from flask import Flask

from campaign.extensions import db
from campaign.letters import services
from campaign.letters.services import LetterText, MeetingData

#: ``shared/`` sits beside the checkout (DESIGN.md).
SEED = Path(__file__).resolve().parents[2].parent / "shared" / "seed" / "open-letter-veto-restraint-2015.md"

#: A short letter in each UN language other than English, written for these tests.
TRANSLATIONS = {
    "fr": LetterText(
        title="Lettre ouverte sur la protection des civils",
        addressee="Aux chefs d'État et de gouvernement\nNew York",
        body_markdown="Nous appelons tous les États à **protéger les civils** et à agir sans délai.",
    ),
    "ar": LetterText(
        title="رسالة مفتوحة بشأن حماية المدنيين",
        addressee="إلى رؤساء الدول والحكومات\nنيويورك",
        body_markdown="ندعو جميع الدول إلى **حماية المدنيين** والعمل دون تأخير من أجل السلام.",
    ),
    "zh": LetterText(
        title="关于保护平民的公开信",
        addressee="致各国元首和政府首脑\n纽约",
        body_markdown="我们呼吁所有国家**保护平民**，并立即采取行动。",
    ),
    "ru": LetterText(
        title="Открытое письмо о защите гражданского населения",
        addressee="Главам государств и правительств\nНью-Йорк",
        body_markdown="Мы призываем все государства **защитить мирных жителей** и действовать без промедления.",
    ),
    "es": LetterText(
        title="Carta abierta sobre la protección de los civiles",
        addressee="A los Jefes de Estado y de Gobierno\nNueva York",
        body_markdown="Pedimos a todos los Estados que **protejan a los civiles** y actúen sin demora.",
    ),
}

ORIGINAL = LetterText(
    title="Open letter on the protection of civilians",
    addressee="To Heads of State and Government\nNew York",
    body_markdown="We call on all States to **protect civilians** and to act *without delay*.",
)


def seed_text() -> LetterText:
    """The seed letter: its heading as the title, its bold opening block as the addressee."""
    if not SEED.is_file():
        pytest.skip(f"the seed letter is missing at {SEED}: check out shared/ beside the repository")
    source = SEED.read_text(encoding="utf-8").strip()
    paragraphs = re.split(r"\n\s*\n", source)
    title = paragraphs[0].lstrip("#").strip()
    addressee_block = paragraphs[1]
    assert addressee_block.startswith("**To:"), "the seed letter's layout changed"
    addressee = "\n".join(line.strip() for line in addressee_block.strip("*").splitlines())
    return LetterText(title=title, addressee=addressee, body_markdown="\n\n".join(paragraphs[2:]))


def body_sentences() -> list[str]:
    """Sentences of the seed letter's body as they read once rendered (smart quotes, no markup)."""
    return [
        "Over the past few years, the United Nations Security Council",
        "Four vetoes used over the span of three years on one crisis",
        "welcomes the leadership of the governments of France and Mexico",
        "anniversary of the United Nations and the ten-year anniversary",
    ]


@dataclass(frozen=True)
class Published:
    id: int
    slug: str
    meeting_id: int | None


def publish(
    app: Flask,
    text: LetterText = ORIGINAL,
    *,
    translations: dict[str, LetterText] | None = None,
    status: str = "open",
    embargo_until: datetime | None = None,
    meeting: MeetingData | None = None,
    slug: str | None = None,
) -> Published:
    """A letter moved along the workflow to ``status``, its translations published; committed."""
    path = {"draft": [], "review": ["review"], "open": ["review", "open"], "closed": ["review", "open", "closed"]}
    path["sent"] = [*path["closed"], "sent"]
    with app.app_context():
        saved_meeting = services.save_meeting(meeting) if meeting else None
        letter = services.create_letter(text, slug=slug, embargo_until=embargo_until, meeting=saved_meeting)
        for language, translated in (translations or {}).items():
            translation = services.save_translation(letter, language, translated)
            services.set_translation_status(translation, "published")
        for step in path[status]:
            services.transition(letter, step)
        db.session.commit()
        return Published(letter.id, letter.slug, saved_meeting.id if saved_meeting else None)


def assert_under(text: str, needles: list[str]) -> None:
    missing = [needle for needle in needles if needle not in text]
    assert not missing, f"missing from the text: {missing}"
