"""The supporters' pages: subscribe, confirm by POST, preferences, unsubscribe, export and deletion."""

from campaign.alerts import bp  # noqa: F401
