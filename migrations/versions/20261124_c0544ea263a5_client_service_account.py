"""client service account

Revision ID: c0544ea263a5
Revises: 68265a9805a3
Create Date: 2026-11-24 06:50:15.927365

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'c0544ea263a5'
down_revision = '68265a9805a3'
branch_labels = None
depends_on = None

FOREIGN_KEY = 'fk_clients_service_account_id_users'
INDEX = 'ix_clients_service_account_id'


def upgrade():
    if op.get_bind().dialect.name == 'sqlite':
        # In place, not batch mode: SQLite adds a nullable column with an inline REFERENCES
        # without copying the table. (Batch mode's copy and DROP of clients would cascade
        # nothing either: migrations/env.py turns foreign keys off while migrating, and checks
        # every reference before committing.)
        op.execute(
            'ALTER TABLE clients ADD COLUMN service_account_id INTEGER'
            f' CONSTRAINT {FOREIGN_KEY} REFERENCES users (id)'
        )
    else:
        op.add_column('clients', sa.Column('service_account_id', sa.Integer(), nullable=True))
        op.create_foreign_key(FOREIGN_KEY, 'clients', 'users', ['service_account_id'], ['id'])
    op.create_index(INDEX, 'clients', ['service_account_id'], unique=False)


def downgrade():
    op.drop_index(INDEX, table_name='clients')
    if op.get_bind().dialect.name == 'sqlite':
        # In place again (SQLite 3.35+): the inline foreign key goes with its column.
        op.execute('ALTER TABLE clients DROP COLUMN service_account_id')
    else:
        op.drop_constraint(FOREIGN_KEY, 'clients', type_='foreignkey')
        op.drop_column('clients', 'service_account_id')
