"""JSON endpoints for alerts: ``/api/v1/alerts`` (``POST`` creates one)."""

from flask_smorest import Blueprint

from campaign.restapi import PREFIX

blp = Blueprint("alerts_api", __name__, url_prefix=PREFIX, description="Alerts to subscribers")
