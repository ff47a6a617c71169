"""JSON endpoints of the signatures domain."""

from flask_smorest import Blueprint

from campaign.restapi import PREFIX

blp = Blueprint("signatures_api", __name__, url_prefix=PREFIX, description="Signatures of letters")
