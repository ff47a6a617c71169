from flask import Blueprint

#: Signing (members and the public) and the signatories' own pages.
bp = Blueprint("signatures", __name__)
#: Coordinators' moderation, invitations, exports and charts.
admin_bp = Blueprint("signatures_admin", __name__, url_prefix="/admin/signatures")

from campaign.signatures import admin_routes, models, routes  # noqa: E402, F401
