"""A mailing's delivery report: what became of each message, for coordinators and for donors.

The counts (by state, by language, by country) are ``GROUP BY`` queries: a report costs the
same few queries whatever the number of deliveries.  The deliveries that need a look
(uncertain, failed, bounced, dropped, suppressed) come a page at a time with their last
events as evidence, read in one windowed query per page.  The CSV export and the printable
record walk the deliveries by country a page at a time (keyset paging), so neither holds
the whole table in memory.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import sqlalchemy as sa
from markupsafe import Markup
from sqlalchemy.orm import selectinload

from campaign.charts import stacked_bars_svg
from campaign.contacts.countries import country_name
from campaign.contacts.models import Contact
from campaign.extensions import db
from campaign.letters.models import LANGUAGE_NAMES_EN
from campaign.mailings.models import Delivery, DeliveryEvent, DeliveryStatus
from campaign.signatures.charts import REGIONS, region_of

S = DeliveryStatus

#: How the charts group the states: (key, label, colour, states), in the order the bars stack.
OUTCOMES: tuple[tuple[str, str, str, frozenset[S]], ...] = (
    ("delivered", "Delivered", "#1b5e20", frozenset({S.DELIVERED})),
    ("sent", "Sent", "#1d5fa8", frozenset({S.SENT})),
    ("waiting", "Not sent yet", "#6b7780", frozenset({S.PENDING, S.SENDING})),
    ("uncertain", "Uncertain", "#b26a00", frozenset({S.UNCERTAIN})),
    ("undelivered", "Not delivered", "#a61b1b", frozenset({S.BOUNCED, S.DROPPED, S.FAILED})),
    ("suppressed", "Suppressed", "#5b2a86", frozenset({S.SUPPRESSED})),
    ("cancelled", "Cancelled", "#3e4a52", frozenset({S.CANCELLED})),
)
_OUTCOME_OF = {state.value: key for key, _, _, states in OUTCOMES for state in states}
#: States whose deliveries the report lists with their evidence.
ATTENTION = (S.UNCERTAIN, S.FAILED, S.BOUNCED, S.DROPPED, S.SUPPRESSED)
#: Lines of history shown as the evidence of each listed delivery.
EVIDENCE_EVENTS = 3
PAGE_SIZE = 500

_LANGUAGE = re.compile(r"[a-z]{2}")
_COUNTRY = re.compile(r"[A-Z]{2}")


@dataclass(frozen=True)
class Filters:
    """What the lists, the export and the record are narrowed to; empty means no condition."""

    state: str = ""
    language: str = ""
    country: str = ""

    @classmethod
    def from_args(cls, args: Mapping[str, str]) -> Filters:
        """From a query string; a value that cannot be a state, language or country is dropped."""
        state = args.get("state", "").strip().lower()
        language = args.get("language", "").strip().lower()
        country = args.get("country", "").strip().upper()
        return cls(
            state=state if state in {s.value for s in DeliveryStatus} else "",
            language=language if _LANGUAGE.fullmatch(language) else "",
            country=country if _COUNTRY.fullmatch(country) else "",
        )

    def apply(self, query: sa.Select) -> sa.Select:
        if self.state:
            query = query.where(Delivery.status == self.state)
        if self.language:
            query = query.where(Delivery.language == self.language)
        if self.country:
            query = query.where(Delivery.country == self.country)
        return query

    def as_args(self) -> dict[str, str]:
        """The filters set, as query arguments for links to the export, the record and the pages."""
        return {name: value for name, value in vars(self).items() if value}

    def describe(self) -> str:
        """ "in the state bounced, in French, in Kenya"; empty without filters."""
        parts = []
        if self.state:
            parts.append(f"in the state {self.state}")
        if self.language:
            parts.append(f"in {language_name(self.language)}")
        if self.country:
            parts.append(f"to {country_name(self.country)}")
        return ", ".join(parts)


@dataclass
class Group:
    """The deliveries of one language, country or region, counted per state."""

    key: str
    name: str
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def outcomes(self) -> dict[str, int]:
        """Counts per outcome of the charts (``OUTCOMES``)."""
        totals = dict.fromkeys((key for key, *_ in OUTCOMES), 0)
        for state, count in self.counts.items():
            totals[_OUTCOME_OF[state]] += count
        return totals

    @property
    def reached(self) -> bool:
        """Whether at least one message was delivered, or sent with no failure reported yet."""
        return bool(self.counts.get(S.DELIVERED.value) or self.counts.get(S.SENT.value))


def language_name(code: str) -> str:
    return LANGUAGE_NAMES_EN.get(code, code)


def by_state(mailing_id: int) -> dict[str, int]:
    """Deliveries per state, every state listed (zeros included)."""
    rows = db.session.execute(
        sa.select(Delivery.status, sa.func.count()).where(Delivery.mailing_id == mailing_id).group_by(Delivery.status)
    )
    counts = {state.value: 0 for state in DeliveryStatus}
    counts.update(dict(rows.tuples().all()))
    return counts


def _grouped(mailing_id: int, column: sa.orm.InstrumentedAttribute[str]) -> dict[str, dict[str, int]]:
    rows = db.session.execute(
        sa.select(column, Delivery.status, sa.func.count())
        .where(Delivery.mailing_id == mailing_id)
        .group_by(column, Delivery.status)
    )
    grouped: dict[str, dict[str, int]] = {}
    for key, state, count in rows.tuples():
        grouped.setdefault(key, {})[state] = count
    return grouped


def by_language(mailing_id: int) -> list[Group]:
    """Deliveries per language (the contact's, as it was when the mailing was sent) and state,
    languages by name."""
    grouped = _grouped(mailing_id, Delivery.language)
    groups = [Group(code, language_name(code), counts) for code, counts in grouped.items()]
    return sorted(groups, key=lambda g: (g.name, g.key))


def by_country(mailing_id: int) -> list[Group]:
    """Deliveries per country (the contact's, as it was when the mailing was sent) and state,
    countries by name."""
    grouped = _grouped(mailing_id, Delivery.country)
    groups = [Group(code, country_name(code), counts) for code, counts in grouped.items()]
    return sorted(groups, key=lambda g: (g.name.casefold(), g.key))


def by_region(countries: Sequence[Group]) -> list[Group]:
    """The countries' counts added up per UN regional group, in the groups' usual order."""
    regions = {name: Group(name, name) for name in REGIONS}
    for country in countries:
        counts = regions[region_of(country.key)].counts
        for state, count in country.counts.items():
            counts[state] = counts.get(state, 0) + count
    return [group for group in regions.values() if group.total]


def outcome_chart(chart_id: str, title: str, groups: Sequence[Group], everything: Group | None = None) -> Markup:
    """Stacked bars of outcomes, one per group (``everything`` first when given)."""
    bars = [(g.name, g.outcomes) for g in ([everything] if everything else []) + list(groups)]
    series = [(key, label, colour) for key, label, colour, _ in OUTCOMES]
    return stacked_bars_svg(chart_id, title, bars, series, empty="The mailing has no deliveries yet.")


# --- the deliveries that need a look ---------------------------------------------------------------


def attention_query(mailing_id: int, filters: Filters) -> sa.Select:
    """Uncertain, failed, bounced, dropped and suppressed deliveries matching ``filters``, by state
    then id, with their contacts.  A state filter outside those states lists none."""
    query = (
        sa.select(Delivery)
        .where(Delivery.mailing_id == mailing_id, Delivery.status.in_([s.value for s in ATTENTION]))
        .options(selectinload(Delivery.contact))
        .order_by(Delivery.status, Delivery.id)
    )
    return filters.apply(query)


def last_events(delivery_ids: Sequence[int], per_delivery: int = EVIDENCE_EVENTS) -> dict[int, list[DeliveryEvent]]:
    """The last ``per_delivery`` lines of each delivery's history, oldest first; one query."""
    if not delivery_ids:
        return {}
    rank = (
        sa.func.row_number()
        .over(partition_by=DeliveryEvent.delivery_id, order_by=DeliveryEvent.id.desc())
        .label("rank")
    )
    ranked = sa.select(DeliveryEvent.id, rank).where(DeliveryEvent.delivery_id.in_(delivery_ids)).subquery()
    rows = db.session.scalars(
        sa.select(DeliveryEvent)
        .join(ranked, ranked.c.id == DeliveryEvent.id)
        .where(ranked.c.rank <= per_delivery)
        .order_by(DeliveryEvent.delivery_id, DeliveryEvent.id)
    )
    found: dict[int, list[DeliveryEvent]] = {delivery_id: [] for delivery_id in delivery_ids}
    for event in rows:
        found[event.delivery_id].append(event)
    return found


def occurred_at(event: DeliveryEvent) -> datetime | None:
    """When the provider says an event happened (its ``timestamp``); None for our own steps."""
    value = (event.data or {}).get("timestamp")
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        return datetime.fromtimestamp(int(float(value)), UTC)
    except (ValueError, OverflowError, OSError):
        return None


# --- every delivery, a page at a time ------------------------------------------------------------------


def _page(query: sa.Select, filters: Filters, size: int, after: tuple[str, int] | None) -> sa.Select:
    """``query`` filtered, by country then id, ``size`` rows from just after ``after``."""
    query = filters.apply(query.order_by(Delivery.country, Delivery.id).limit(size))
    if after is not None:
        query = query.where(sa.tuple_(Delivery.country, Delivery.id) > sa.tuple_(*after))
    return query


def pages(
    mailing_id: int, filters: Filters, size: int = PAGE_SIZE, *, events: bool = False
) -> Iterator[list[Delivery]]:
    """The mailing's deliveries matching ``filters`` by country code, then id (each mission's
    contacts together), ``size`` at a time, with their contacts (and their whole history when
    ``events``).  Each page is read from where the last one ended, so a page costs the same
    however far into the mailing it is."""
    options = [selectinload(Delivery.contact)]
    if events:
        options.append(selectinload(Delivery.events))
    query = sa.select(Delivery).where(Delivery.mailing_id == mailing_id).options(*options)
    after: tuple[str, int] | None = None
    while True:
        page = list(db.session.scalars(_page(query, filters, size, after)))
        if not page:
            return
        yield page
        after = (page[-1].country, page[-1].id)


#: The export's columns, in order.
EXPORT_FIELDS = (
    "delivery_id", "country", "country_name", "organisation", "contact_name", "email", "language", "status",
    "reason", "message_id", "due_date", "sent_date", "attempts", "last_event", "last_event_date", "contact_id",
)  # fmt: skip


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _last_event_of(delivery_ids: Sequence[int]) -> dict[int, tuple[str, datetime]]:
    """(kind, recorded at) of each delivery's last event; one query, plain rows."""
    rank = sa.func.row_number().over(partition_by=DeliveryEvent.delivery_id, order_by=DeliveryEvent.id.desc())
    ranked = (
        sa.select(DeliveryEvent.delivery_id, DeliveryEvent.kind, DeliveryEvent.created_at, rank.label("rank"))
        .where(DeliveryEvent.delivery_id.in_(delivery_ids))
        .subquery()
    )
    rows = db.session.execute(
        sa.select(ranked.c.delivery_id, ranked.c.kind, ranked.c.created_at).where(ranked.c.rank == 1)
    )
    return {delivery_id: (kind, created_at) for delivery_id, kind, created_at in rows.tuples()}


def export_rows(mailing_id: int, filters: Filters, size: int = PAGE_SIZE) -> Iterator[list[list[object]]]:
    """The export's rows (``EXPORT_FIELDS``) in the order of ``pages``, a page at a time, each
    with its last event.  Plain rows, two queries a page: no objects are built for an export."""
    columns = (
        Delivery.id, Delivery.country, Contact.organisation, Contact.honorific, Contact.given_name,
        Contact.family_name, Delivery.email, Delivery.language, Delivery.status, Delivery.reason, Delivery.message_id,
        Delivery.due_at, Delivery.sent_at, Delivery.attempts, Delivery.contact_id,
    )  # fmt: skip
    names: dict[str, str] = {}
    query = sa.select(*columns).outerjoin(Contact, Contact.id == Delivery.contact_id)
    query = query.where(Delivery.mailing_id == mailing_id)
    after: tuple[str, int] | None = None
    while True:
        page = db.session.execute(_page(query, filters, size, after)).all()
        if not page:
            return
        latest = _last_event_of([row.id for row in page])
        rows = []
        for (delivery_id, country, organisation, honorific, given, family, email, language, status, reason,
             message_id, due_at, sent_at, attempts, contact_id) in page:  # fmt: skip
            kind, recorded = latest.get(delivery_id, (None, None))
            rows.append([
                delivery_id, country, names.get(country) or names.setdefault(country, country_name(country)),
                organisation or "", " ".join(part for part in (honorific, given, family) if part), email, language,
                status, reason, message_id, _iso(due_at), _iso(sent_at), attempts, kind, _iso(recorded), contact_id,
            ])  # fmt: skip
        yield rows
        after = (page[-1].country, page[-1].id)
