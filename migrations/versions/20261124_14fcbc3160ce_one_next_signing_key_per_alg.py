"""one next signing key per tenant and alg

A key may now be staged (status 'next'): published in the JWKS before it signs, so verifiers
that cache the JWKS know it by the time a rotation makes it the signer. A partial unique index
allows one staged key per tenant and alg, so two stagings racing cannot both publish one.
Downgrading retires the staged keys: the older release knows no such status, and they never
signed a token.

Revision ID: 14fcbc3160ce
Revises: 8e4f1b2c3d5a
Create Date: 2026-11-24 12:40:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '14fcbc3160ce'
down_revision = '8e4f1b2c3d5a'
branch_labels = None
depends_on = None

INDEX = 'ux_signing_keys_next_alg'
NEXT = sa.text("status = 'next'")


def upgrade():
    op.create_index(
        INDEX, 'signing_keys', ['tenant_id', 'alg'], unique=True,
        postgresql_where=NEXT, sqlite_where=NEXT,
    )


def downgrade():
    op.drop_index(INDEX, table_name='signing_keys')
    op.execute(
        "UPDATE signing_keys SET status = 'retired', retired_at = CURRENT_TIMESTAMP"
        " WHERE status = 'next'"
    )
