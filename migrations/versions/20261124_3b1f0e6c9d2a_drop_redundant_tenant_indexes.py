"""drop redundant tenant_id indexes

Tables whose unique key starts with tenant_id are looked up, and cascaded from their tenant,
through that key's index; their own index on tenant_id alone only cost memory and writes.

Revision ID: 3b1f0e6c9d2a
Revises: c0544ea263a5
Create Date: 2026-11-24 11:05:00.000000

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '3b1f0e6c9d2a'
down_revision = 'c0544ea263a5'
branch_labels = None
depends_on = None

TABLES = (
    'clients',
    'used_client_assertions',
    'signing_keys',
    'roles',
    'users',
    'login_sessions',
    'issued_tokens',
)


def upgrade():
    for table in TABLES:
        op.drop_index(f'ix_{table}_tenant_id', table_name=table)


def downgrade():
    for table in TABLES:
        op.create_index(f'ix_{table}_tenant_id', table, ['tenant_id'], unique=False)
