"""tenant-owned references bound to the tenant

Every reference from a tenant-owned row to another (a client's service account, a login's
user, a code's or a token's client, user and login, a launch's app) named its target by id
alone, so the database would have taken a token of one tenant naming a client of another. Now
each is a foreign key (tenant_id, column) -> target (tenant_id, id), as user_roles' are;
clients and login_sessions get a unique (tenant_id, id) for them to refer to.

The single-column indexes behind them become (tenant_id, column), which serve the same
cascades and revocations and the tenant's own cascading delete, so authorization_codes' index
on tenant_id alone goes.

A code's or a token's login_session_id keeps its own key, ON DELETE SET NULL: SET NULL on the
composite key would null tenant_id too (NOT NULL, so the delete would fail), and only
PostgreSQL 15 can name the one column to null. The composite key beside it is checked at commit,
so that, whatever the order PostgreSQL fires the two keys' triggers in, a deleted login leaves
its codes and tokens with login_session_id NULL, as before.

A row that already names another tenant's row stops the upgrade, changing nothing, with the
query that finds it: which side is wrong is for the operator to judge, not for a migration to
guess.

Revision ID: ed01cbaa881a
Revises: bd1ac993c61d
Create Date: 2026-11-24 20:30:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'ed01cbaa881a'
down_revision = 'bd1ac993c61d'
branch_labels = None
depends_on = None

# (table, column, referred table, ON DELETE, whether an index on the column serves it)
REFERENCES = (
    ('clients', 'service_account_id', 'users', None, True),
    ('login_sessions', 'user_id', 'users', 'CASCADE', True),
    ('authorization_codes', 'client_pk', 'clients', 'CASCADE', True),
    ('authorization_codes', 'user_id', 'users', 'CASCADE', True),
    ('authorization_codes', 'login_session_id', 'login_sessions', 'SET NULL', False),
    ('issued_tokens', 'client_pk', 'clients', 'CASCADE', True),
    ('issued_tokens', 'user_id', 'users', 'CASCADE', True),
    ('issued_tokens', 'login_session_id', 'login_sessions', 'SET NULL', False),
    ('launches', 'client_pk', 'clients', 'CASCADE', False),
)
# Referred to by (tenant_id, id) from now on; users' unique key came with user_roles'.
TARGETS = ('clients', 'login_sessions')
# An index on tenant_id alone, redundant next to the new ones that start with it.
TENANT_INDEX = ('authorization_codes', 'ix_authorization_codes_tenant_id')
# clients.service_account_id's key was added in place on SQLite (revision c0544ea263a5), which
# leaves it unnamed there; batch mode gives it the name it has elsewhere, to drop it by.
NAMING_CONVENTION = {'fk': 'fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s'}


def crossing(table, column, referred):
    return (
        f'SELECT {table}.id FROM {table} JOIN {referred} ON {referred}.id = {table}.{column}'
        f' WHERE {referred}.tenant_id <> {table}.tenant_id'
    )


def referring_tables():
    return list(dict.fromkeys(table for table, *_ in REFERENCES))


def references_of(table):
    return [reference[1:] for reference in REFERENCES if reference[0] == table]


def upgrade():
    stop_at_crossing_references()
    for table in TARGETS:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.create_unique_constraint(f'uq_{table}_tenant_id_id', ['tenant_id', 'id'])

    for table in referring_tables():
        with op.batch_alter_table(
            table, schema=None, naming_convention=NAMING_CONVENTION
        ) as batch_op:
            if table == TENANT_INDEX[0]:
                batch_op.drop_index(TENANT_INDEX[1])
            for column, referred, ondelete, indexed in references_of(table):
                if indexed:
                    batch_op.drop_index(f'ix_{table}_{column}')
                    batch_op.create_index(f'ix_{table}_tenant_id_{column}', ['tenant_id', column])
                if ondelete == 'SET NULL':  # the single key stays: it sets the column NULL
                    options = {'deferrable': True, 'initially': 'DEFERRED'}
                else:
                    batch_op.drop_constraint(f'fk_{table}_{column}_{referred}', type_='foreignkey')
                    options = {'ondelete': ondelete}
                batch_op.create_foreign_key(
                    f'fk_{table}_tenant_id_{referred}', referred,
                    ['tenant_id', column], ['tenant_id', 'id'], **options,
                )


def stop_at_crossing_references():
    connection = op.get_bind()
    found = []
    for table, column, referred, _, _ in REFERENCES:
        query = crossing(table, column, referred)
        count = len(connection.execute(sa.text(query)).all())
        if count:
            found.append(f'{count} in {table}.{column} (find them with "{query}")')
    if found:
        raise RuntimeError(
            f'rows name a row of another tenant: {"; ".join(found)}; delete or correct them,'
            ' then upgrade again'
        )


def downgrade():
    in_place = op.get_bind().dialect.name == 'sqlite'
    for table in reversed(referring_tables()):
        if table == 'clients' and in_place:
            continue  # last, below
        with op.batch_alter_table(table, schema=None) as batch_op:
            for column, referred, ondelete, indexed in reversed(references_of(table)):
                batch_op.drop_constraint(f'fk_{table}_tenant_id_{referred}', type_='foreignkey')
                if ondelete != 'SET NULL':
                    batch_op.create_foreign_key(
                        f'fk_{table}_{column}_{referred}', referred, [column], ['id'],
                        ondelete=ondelete,
                    )
                if indexed:
                    batch_op.drop_index(f'ix_{table}_tenant_id_{column}')
                    batch_op.create_index(f'ix_{table}_{column}', [column], unique=False)
            if table == TENANT_INDEX[0]:
                batch_op.create_index(TENANT_INDEX[1], ['tenant_id'], unique=False)

    for table in reversed(TARGETS):
        if table == 'clients' and in_place:
            unbind_service_accounts_in_place()
            continue
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_constraint(f'uq_{table}_tenant_id_id', type_='unique')


def unbind_service_accounts_in_place():
    """SQLite: clients as revision c0544ea263a5 left them, service_account_id with its key
    inline, since that revision's downgrade drops the column in place (a table-level key would
    stop it, and every batch rebuild of clients makes it one, so this comes last)."""
    with op.batch_alter_table('clients', schema=None) as batch_op:
        batch_op.drop_index('ix_clients_tenant_id_service_account_id')
        batch_op.drop_constraint('fk_clients_tenant_id_users', type_='foreignkey')
        batch_op.drop_constraint('uq_clients_tenant_id_id', type_='unique')
    op.execute('ALTER TABLE clients RENAME COLUMN service_account_id TO tenant_bound_account_id')
    op.execute(
        'ALTER TABLE clients ADD COLUMN service_account_id INTEGER'
        ' CONSTRAINT fk_clients_service_account_id_users REFERENCES users (id)'
    )
    op.execute('UPDATE clients SET service_account_id = tenant_bound_account_id')
    op.execute('ALTER TABLE clients DROP COLUMN tenant_bound_account_id')
    op.create_index('ix_clients_service_account_id', 'clients', ['service_account_id'])
