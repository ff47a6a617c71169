"""JSON endpoints of the letters domain."""

from flask_smorest import Blueprint

from campaign.restapi import PREFIX

blp = Blueprint("letters_api", __name__, url_prefix=PREFIX, description="Letters, revisions and meetings")
