"""Coordinators' pages for subscribers and topics."""

from campaign.alerts import admin_bp  # noqa: F401
