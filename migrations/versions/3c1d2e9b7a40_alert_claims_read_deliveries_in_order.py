"""alert claims read pending deliveries in id order from the index

Revision ID: 3c1d2e9b7a40
Revises: 86e6e16917f1
Create Date: 2026-11-27 13:40:00.000000

A chunk claims the first 1,000 pending deliveries of one language by id.  With ``id`` last in
the index, PostgreSQL reads them in order and stops at 1,000, instead of reading and sorting
every pending delivery of the language for each chunk.
"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '3c1d2e9b7a40'
down_revision = '86e6e16917f1'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('alert_deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_alert_deliveries_claim')
        batch_op.create_index('ix_alert_deliveries_claim', ['alert_id', 'status', 'language', 'id'], unique=False)


def downgrade():
    with op.batch_alter_table('alert_deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_alert_deliveries_claim')
        batch_op.create_index('ix_alert_deliveries_claim', ['alert_id', 'status', 'language'], unique=False)
