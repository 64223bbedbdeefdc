"""forget expired rows: indexes for the purge, and no NOTIFY for deleting an expired token

Tokens, codes, launches and login sessions are forgotten a while after they expire
(authserver/upkeep.py), so each table gets an index on expires_at. A deleted login session
sets login_session_id NULL in issued_tokens and authorization_codes: each gets an index on
that column (partial in issued_tokens, where Backend Services tokens have none), or every
deleted session would scan those tables.

On PostgreSQL the indexes are built CONCURRENTLY (outside the migration's transaction), so a
live database keeps issuing tokens meanwhile. And the trigger that tells every instance a
token row was deleted (migration 68265a9805a3) fires only for a row that has not expired: an
expired token answers inactive whether or not its row is there, so its deletion changes no
answer and must not empty every instance's introspection cache of its tenant.

Revision ID: 9c4e2b7a1d05
Revises: 5a0c3e7d9b21
Create Date: 2026-11-25 02:10:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '9c4e2b7a1d05'
down_revision = '5a0c3e7d9b21'
branch_labels = None
depends_on = None

# name -> (table, column, partial-index condition or None)
INDEXES = {
    'ix_issued_tokens_expires_at': ('issued_tokens', 'expires_at', None),
    'ix_issued_tokens_login_session_id': (
        'issued_tokens', 'login_session_id', 'login_session_id IS NOT NULL'
    ),
    'ix_authorization_codes_expires_at': ('authorization_codes', 'expires_at', None),
    'ix_authorization_codes_login_session_id': (
        'authorization_codes', 'login_session_id', None
    ),
    'ix_launches_expires_at': ('launches', 'expires_at', None),
    'ix_login_sessions_expires_at': ('login_sessions', 'expires_at', None),
}


def upgrade():
    postgresql = op.get_bind().dialect.name == 'postgresql'
    if postgresql:
        op.execute("DROP TRIGGER issued_tokens_state_deleted ON issued_tokens")
        op.execute("""
            CREATE TRIGGER issued_tokens_state_deleted AFTER DELETE ON issued_tokens
            FOR EACH ROW WHEN (OLD.expires_at > now())
            EXECUTE FUNCTION authserver_token_state_changed('tenant_id')
        """)
        with op.get_context().autocommit_block():
            for name, (table, column, where) in INDEXES.items():
                op.create_index(
                    name,
                    table,
                    [column],
                    postgresql_concurrently=True,
                    postgresql_where=sa.text(where) if where else None,
                )
        return
    for name, (table, column, where) in INDEXES.items():
        op.create_index(name, table, [column], sqlite_where=sa.text(where) if where else None)


def downgrade():
    postgresql = op.get_bind().dialect.name == 'postgresql'
    for name, (table, _, _) in INDEXES.items():
        op.drop_index(name, table_name=table)
    if postgresql:
        op.execute("DROP TRIGGER issued_tokens_state_deleted ON issued_tokens")
        op.execute("""
            CREATE TRIGGER issued_tokens_state_deleted AFTER DELETE ON issued_tokens
            FOR EACH ROW EXECUTE FUNCTION authserver_token_state_changed('tenant_id')
        """)
