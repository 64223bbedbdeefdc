"""resource server may launch: starting EHR launches is a right of its own

Until now every resource server of a tenant could both introspect and POST /launch. A
resource server now starts launches only when registered for it (clients.may_launch). The
resource servers registered before this revision all could, and an EHR among them must keep
working after the upgrade, so each is given the right; an operator withdraws it from the ones
that only introspect (authserver client set-launch TENANT CLIENT_ID --may-not-launch). Apps
never may launch: theirs stays false.

Added in place on both databases (SQLite adds a column with a constant default without
copying the table, and drops it again in place since 3.35), so no row referring to a client
is touched.

Revision ID: 117c253dd27e
Revises: 9c4e2b7a1d05
Create Date: 2026-11-25 04:34:07.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '117c253dd27e'
down_revision = '9c4e2b7a1d05'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column(
        'clients',
        sa.Column('may_launch', sa.Boolean(), server_default=sa.false(), nullable=False),
    )
    clients = sa.table('clients', sa.column('kind'), sa.column('may_launch', sa.Boolean))
    existing_resource_servers = clients.update().where(clients.c.kind == 'resource_server')
    op.execute(existing_resource_servers.values(may_launch=sa.true()))


def downgrade():
    op.drop_column('clients', 'may_launch')
