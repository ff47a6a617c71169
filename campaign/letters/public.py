"""Public pages: published letters, their PDF, the Atom feed, meeting calendars."""

from campaign.letters import public_bp  # noqa: F401
