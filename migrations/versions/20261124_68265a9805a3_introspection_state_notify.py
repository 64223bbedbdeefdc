"""introspection state notify: triggers that tell every instance a token's state changed

PostgreSQL only (SQLite instances read the state on every request). Any change to a row that
introspection's fast path reads (tenants, clients, users, signing keys, and access tokens'
revocation) sends NOTIFY authserver_token_state with the tenant's id, in the changing
transaction; see authserver/tokens/statecache.py.

Revision ID: 68265a9805a3
Revises: 58727d000638
Create Date: 2026-11-24 09:10:00.000000

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '68265a9805a3'
down_revision = '58727d000638'
branch_labels = None
depends_on = None

# table -> (its tenant id column, the condition on UPDATE that can change an answer)
WATCHED = {
    'tenants': ('id', 'true'),
    'clients': ('tenant_id', 'true'),
    'users': ('tenant_id', 'true'),
    'signing_keys': ('tenant_id', 'true'),
    'issued_tokens': ('tenant_id', "NEW.kind = 'access' OR OLD.kind = 'access'"),
}


def upgrade():
    if op.get_bind().dialect.name != 'postgresql':
        return
    op.execute("""
        CREATE FUNCTION authserver_token_state_changed() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('authserver_token_state', to_jsonb(OLD) ->> TG_ARGV[0]);
            RETURN NULL;
        END $$
    """)
    op.execute("""
        CREATE FUNCTION authserver_token_state_truncated() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('authserver_token_state', '*');
            RETURN NULL;
        END $$
    """)
    for table, (column, condition) in WATCHED.items():
        op.execute(f"""
            CREATE TRIGGER {table}_state_updated AFTER UPDATE ON {table}
            FOR EACH ROW WHEN ({condition})
            EXECUTE FUNCTION authserver_token_state_changed('{column}')
        """)
        op.execute(f"""
            CREATE TRIGGER {table}_state_deleted AFTER DELETE ON {table}
            FOR EACH ROW EXECUTE FUNCTION authserver_token_state_changed('{column}')
        """)
        op.execute(f"""
            CREATE TRIGGER {table}_state_truncated AFTER TRUNCATE ON {table}
            FOR EACH STATEMENT EXECUTE FUNCTION authserver_token_state_truncated()
        """)


def downgrade():
    if op.get_bind().dialect.name != 'postgresql':
        return
    for table in WATCHED:
        for event in ('updated', 'deleted', 'truncated'):
            op.execute(f"DROP TRIGGER {table}_state_{event} ON {table}")
    op.execute("DROP FUNCTION authserver_token_state_truncated()")
    op.execute("DROP FUNCTION authserver_token_state_changed()")
