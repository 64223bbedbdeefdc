"""ehr launches

Revision ID: 289963bcb34b
Revises: ab9790f646da
Create Date: 2026-11-24 04:58:18.880539

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '289963bcb34b'
down_revision = 'ab9790f646da'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('launches',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('launch_digest', sa.String(length=64), nullable=False),
    sa.Column('patient', sa.String(length=64), nullable=False),
    sa.Column('encounter', sa.String(length=64), nullable=True),
    sa.Column('fhir_context', sa.JSON(), nullable=True),
    sa.Column('intent', sa.String(length=200), nullable=True),
    sa.Column('need_patient_banner', sa.Boolean(), nullable=False),
    sa.Column('client_pk', sa.Integer(), nullable=True),
    sa.Column('created_by', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['client_pk'], ['clients.id'], name=op.f('fk_launches_client_pk_clients'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_launches_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_launches')),
    sa.UniqueConstraint('launch_digest', name=op.f('uq_launches_launch_digest'))
    )
    with op.batch_alter_table('launches', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_launches_tenant_id'), ['tenant_id'], unique=False)

    with op.batch_alter_table('tenants', schema=None) as batch_op:
        batch_op.add_column(sa.Column('launch_lifetime', sa.Integer(), server_default='300', nullable=False))



def downgrade():
    with op.batch_alter_table('tenants', schema=None) as batch_op:
        batch_op.drop_column('launch_lifetime')

    with op.batch_alter_table('launches', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_launches_tenant_id'))

    op.drop_table('launches')
