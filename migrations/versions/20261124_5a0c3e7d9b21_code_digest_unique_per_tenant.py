"""code digest unique per tenant

An authorization code is found by its tenant and digest, so its digest is unique per tenant,
like every other key (launches' launch_digest, login sessions' token_digest): uq (tenant_id,
code_digest) replaces the global one. The downgrade's global key holds for every real
database: digests of random 256-bit codes do not repeat.

Revision ID: 5a0c3e7d9b21
Revises: ed01cbaa881a
Create Date: 2026-11-24 21:10:00.000000

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '5a0c3e7d9b21'
down_revision = 'ed01cbaa881a'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('authorization_codes', schema=None) as batch_op:
        batch_op.drop_constraint('uq_authorization_codes_code_digest', type_='unique')
        batch_op.create_unique_constraint(
            'uq_authorization_codes_tenant_id_code_digest', ['tenant_id', 'code_digest']
        )


def downgrade():
    with op.batch_alter_table('authorization_codes', schema=None) as batch_op:
        batch_op.drop_constraint('uq_authorization_codes_tenant_id_code_digest', type_='unique')
        batch_op.create_unique_constraint('uq_authorization_codes_code_digest', ['code_digest'])
