from flask import Blueprint

#: Signing (members and the public) and the signatories' own pages.
bp = Blueprint("signatures", __name__)
#: Coordinators' moderation, invitations, exports and charts.
admin_bp = Blueprint("signatures_admin", __name__, url_prefix="/admin/signatures")

from campaign.signatures import admin_routes, invite_routes, models, report_routes, routes, signon_routes  # noqa: E402, F401
