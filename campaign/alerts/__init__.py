from flask import Blueprint

#: The supporters' pages: subscribe, confirm, preferences, unsubscribe, their data.
bp = Blueprint("alerts", __name__)
#: Coordinators' pages: subscribers, topics, alerts and their delivery reports.
admin_bp = Blueprint("alerts_admin", __name__, url_prefix="/admin")

from campaign.alerts import admin_routes, models, routes, subscriber_routes  # noqa: E402, F401
