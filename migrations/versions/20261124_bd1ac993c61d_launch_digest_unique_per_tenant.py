"""launch digest unique per tenant

A launch is found by its tenant and digest, so its digest is unique per tenant, like every
other key (login sessions' token_digest, tokens' jti): uq (tenant_id, launch_digest) replaces
the global one, and its index serves the tenant's lookups and cascading delete, so the index
on tenant_id alone goes. The downgrade's global key holds for every real database: digests
of random 256-bit launch ids do not repeat.

Revision ID: bd1ac993c61d
Revises: ec9d4be3455d
Create Date: 2026-11-24 19:30:00.000000

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = 'bd1ac993c61d'
down_revision = 'ec9d4be3455d'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('launches', schema=None) as batch_op:
        batch_op.drop_index('ix_launches_tenant_id')
        batch_op.drop_constraint('uq_launches_launch_digest', type_='unique')
        batch_op.create_unique_constraint(
            'uq_launches_tenant_id_launch_digest', ['tenant_id', 'launch_digest']
        )


def downgrade():
    with op.batch_alter_table('launches', schema=None) as batch_op:
        batch_op.drop_constraint('uq_launches_tenant_id_launch_digest', type_='unique')
        batch_op.create_unique_constraint('uq_launches_launch_digest', ['launch_digest'])
        batch_op.create_index('ix_launches_tenant_id', ['tenant_id'], unique=False)
