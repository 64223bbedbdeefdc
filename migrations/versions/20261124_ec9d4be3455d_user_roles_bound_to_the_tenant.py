"""user_roles bound to the tenant

A user of one tenant could be linked to a role of another had any code path got it wrong. Now
user_roles has a tenant_id that both of its foreign keys include, (tenant_id, user_id) to users
and (tenant_id, role_id) to roles, so the database refuses such a link; users and roles get a
unique (tenant_id, id) for them to refer to. Existing links take their user's tenant. A link
that crosses tenants already stops the upgrade with the query that finds it: which of its two
sides is wrong is for the operator to judge, not for a migration to guess.

Revision ID: ec9d4be3455d
Revises: 14fcbc3160ce
Create Date: 2026-11-24 19:20:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'ec9d4be3455d'
down_revision = '14fcbc3160ce'
branch_labels = None
depends_on = None

CROSSING_LINKS = (
    'SELECT user_roles.user_id, user_roles.role_id FROM user_roles'
    ' JOIN users ON users.id = user_roles.user_id'
    ' JOIN roles ON roles.id = user_roles.role_id'
    ' WHERE users.tenant_id <> roles.tenant_id'
)


def upgrade():
    crossing = op.get_bind().execute(sa.text(CROSSING_LINKS)).all()
    if crossing:
        raise RuntimeError(
            f'{len(crossing)} user_roles row(s) link a user to a role of another tenant; find '
            f'them with "{CROSSING_LINKS}", delete or correct them, then upgrade again'
        )
    for table in ('users', 'roles'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.create_unique_constraint(f'uq_{table}_tenant_id_id', ['tenant_id', 'id'])

    with op.batch_alter_table('user_roles', schema=None) as batch_op:
        batch_op.add_column(sa.Column('tenant_id', sa.Integer(), nullable=True))
    op.execute(
        'UPDATE user_roles SET tenant_id ='
        ' (SELECT users.tenant_id FROM users WHERE users.id = user_roles.user_id)'
    )
    with op.batch_alter_table('user_roles', schema=None) as batch_op:
        batch_op.alter_column('tenant_id', existing_type=sa.Integer(), nullable=False)
        batch_op.drop_constraint('fk_user_roles_user_id_users', type_='foreignkey')
        batch_op.drop_constraint('fk_user_roles_role_id_roles', type_='foreignkey')
        batch_op.drop_constraint('pk_user_roles', type_='primary')
        batch_op.create_primary_key('pk_user_roles', ['tenant_id', 'user_id', 'role_id'])
        batch_op.create_foreign_key(
            'fk_user_roles_tenant_id_users', 'users',
            ['tenant_id', 'user_id'], ['tenant_id', 'id'], ondelete='CASCADE',
        )
        batch_op.create_foreign_key(
            'fk_user_roles_tenant_id_roles', 'roles',
            ['tenant_id', 'role_id'], ['tenant_id', 'id'], ondelete='CASCADE',
        )
        batch_op.create_index('ix_user_roles_tenant_id_role_id', ['tenant_id', 'role_id'])


def downgrade():
    with op.batch_alter_table('user_roles', schema=None) as batch_op:
        batch_op.drop_index('ix_user_roles_tenant_id_role_id')
        batch_op.drop_constraint('fk_user_roles_tenant_id_roles', type_='foreignkey')
        batch_op.drop_constraint('fk_user_roles_tenant_id_users', type_='foreignkey')
        batch_op.drop_constraint('pk_user_roles', type_='primary')
        batch_op.create_primary_key('pk_user_roles', ['user_id', 'role_id'])
        batch_op.create_foreign_key(
            'fk_user_roles_user_id_users', 'users', ['user_id'], ['id'], ondelete='CASCADE'
        )
        batch_op.create_foreign_key(
            'fk_user_roles_role_id_roles', 'roles', ['role_id'], ['id'], ondelete='CASCADE'
        )
        batch_op.drop_column('tenant_id')

    for table in ('roles', 'users'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_constraint(f'uq_{table}_tenant_id_id', type_='unique')
