"""tenant patient search url

Revision ID: eecb5fdc6bc5
Revises: 289963bcb34b
Create Date: 2026-11-24 05:01:13.199267

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'eecb5fdc6bc5'
down_revision = '289963bcb34b'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('tenants', schema=None) as batch_op:
        batch_op.add_column(sa.Column('patient_search_url', sa.String(length=2000), nullable=True))



def downgrade():
    with op.batch_alter_table('tenants', schema=None) as batch_op:
        batch_op.drop_column('patient_search_url')

