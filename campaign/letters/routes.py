"""Coordinators' pages for letters, revisions, the workflow, translations and meetings."""

from campaign.letters import bp  # noqa: F401
