"""Coordinators' pages for alerts: compose, preview, test send, send, delivery reports."""

from campaign.alerts import admin_bp  # noqa: F401
