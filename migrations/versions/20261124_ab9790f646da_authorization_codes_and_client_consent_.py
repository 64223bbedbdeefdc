"""authorization codes and client consent policy

Revision ID: ab9790f646da
Revises: 7ca1a24a0360
Create Date: 2026-11-24 04:47:08.702115

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'ab9790f646da'
down_revision = '7ca1a24a0360'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('authorization_codes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code_digest', sa.String(length=64), nullable=False),
    sa.Column('grant_id', sa.String(length=64), nullable=False),
    sa.Column('client_pk', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('login_session_id', sa.Integer(), nullable=True),
    sa.Column('redirect_uri', sa.String(length=2000), nullable=False),
    sa.Column('scope', sa.Text(), nullable=False),
    sa.Column('nonce', sa.String(length=255), nullable=True),
    sa.Column('code_challenge', sa.String(length=128), nullable=True),
    sa.Column('code_challenge_method', sa.String(length=8), nullable=True),
    sa.Column('context', sa.JSON(), nullable=False),
    sa.Column('auth_time', sa.DateTime(timezone=True), nullable=False),
    sa.Column('issued_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['client_pk'], ['clients.id'], name=op.f('fk_authorization_codes_client_pk_clients'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['login_session_id'], ['login_sessions.id'], name=op.f('fk_authorization_codes_login_session_id_login_sessions'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_authorization_codes_tenant_id_tenants'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_authorization_codes_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_authorization_codes')),
    sa.UniqueConstraint('code_digest', name=op.f('uq_authorization_codes_code_digest'))
    )
    with op.batch_alter_table('authorization_codes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_authorization_codes_client_pk'), ['client_pk'], unique=False)
        batch_op.create_index(batch_op.f('ix_authorization_codes_tenant_id'), ['tenant_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_authorization_codes_user_id'), ['user_id'], unique=False)

    with op.batch_alter_table('clients', schema=None) as batch_op:
        batch_op.add_column(sa.Column('trusted', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column('legacy_smart_v1', sa.Boolean(), server_default=sa.false(), nullable=False))



def downgrade():
    with op.batch_alter_table('clients', schema=None) as batch_op:
        batch_op.drop_column('legacy_smart_v1')
        batch_op.drop_column('trusted')

    with op.batch_alter_table('authorization_codes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_authorization_codes_user_id'))
        batch_op.drop_index(batch_op.f('ix_authorization_codes_tenant_id'))
        batch_op.drop_index(batch_op.f('ix_authorization_codes_client_pk'))

    op.drop_table('authorization_codes')
