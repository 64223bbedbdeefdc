"""one active signing key per tenant and alg

Two rotations racing could each leave an active key; a partial unique index now refuses the
second. Should a database already hold two, the newest stays active and the others become
published: they stay in the JWKS, so every token they signed still verifies.

Revision ID: 5d2c8e1a7f40
Revises: 3b1f0e6c9d2a
Create Date: 2026-11-24 11:40:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '5d2c8e1a7f40'
down_revision = '3b1f0e6c9d2a'
branch_labels = None
depends_on = None

INDEX = 'ux_signing_keys_active_alg'
ACTIVE = sa.text("status = 'active'")


def upgrade():
    op.execute(
        "UPDATE signing_keys SET status = 'published', rotated_at = CURRENT_TIMESTAMP"
        " WHERE status = 'active' AND id NOT IN"
        " (SELECT max(id) FROM signing_keys WHERE status = 'active' GROUP BY tenant_id, alg)"
    )
    op.create_index(
        INDEX, 'signing_keys', ['tenant_id', 'alg'], unique=True,
        postgresql_where=ACTIVE, sqlite_where=ACTIVE,
    )


def downgrade():
    op.drop_index(INDEX, table_name='signing_keys')
