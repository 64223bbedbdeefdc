"""opaque user subject

A user's sub (ID and access tokens, introspection) was str(users.id), the global row id, which
told every tenant's apps how many users all tenants have together and in what order they signed
up. users.subject, unique per tenant, is now the sub: a random UUID for a user made from now
on. Existing users get str(id), the sub they have today, so an app that keyed its accounts on
sub keeps finding them (OIDC Core §2: a sub is never reassigned).

The downgrade drops the column, and the code before this revision issues str(id) again; a user
made since the upgrade then has str(id) as sub, and keeps it when this revision is applied again.

Revision ID: 6f3a9d2c1b84
Revises: 117c253dd27e
Create Date: 2026-11-25 05:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '6f3a9d2c1b84'
down_revision = '117c253dd27e'
branch_labels = None
depends_on = None

UNIQUE = 'uq_users_tenant_id_subject'


def upgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('subject', sa.String(length=64), nullable=True))
    op.execute('UPDATE users SET subject = CAST(id AS VARCHAR(64))')
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.alter_column('subject', existing_type=sa.String(length=64), nullable=False)
        batch_op.create_unique_constraint(UNIQUE, ['tenant_id', 'subject'])


def downgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_constraint(UNIQUE, type_='unique')
        batch_op.drop_column('subject')
