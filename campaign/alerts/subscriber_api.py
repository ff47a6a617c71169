"""JSON endpoints for subscribers: ``/api/v1/subscribers`` (coordinators)."""

from flask_smorest import Blueprint

from campaign.restapi import PREFIX

blp = Blueprint("subscribers_api", __name__, url_prefix=PREFIX, description="Subscribers to alerts")
