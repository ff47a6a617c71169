"""Signature pages."""

from campaign.signatures import admin_bp, bp  # noqa: F401
