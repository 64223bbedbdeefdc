"""token state notify reads one column

The NOTIFY trigger took the tenant id from to_jsonb(OLD), which fails for a row holding a JSON
value with a \\u0000 escape (jsonb cannot hold one), and with it the UPDATE or DELETE that fired
it: such a token could no longer be revoked, nor its user disabled. It now reads only the tenant
id column.

Revision ID: 8e4f1b2c3d5a
Revises: 5d2c8e1a7f40
Create Date: 2026-11-24 11:50:00.000000

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '8e4f1b2c3d5a'
down_revision = '5d2c8e1a7f40'
branch_labels = None
depends_on = None

FUNCTION = """
    CREATE OR REPLACE FUNCTION authserver_token_state_changed() RETURNS trigger
    LANGUAGE plpgsql AS $$
    {body}
    $$
"""
ONE_COLUMN = """
    DECLARE
        tenant text;
    BEGIN
        EXECUTE format('SELECT ($1).%I::text', TG_ARGV[0]) INTO tenant USING OLD;
        PERFORM pg_notify('authserver_token_state', tenant);
        RETURN NULL;
    END
"""
WHOLE_ROW = """
    BEGIN
        PERFORM pg_notify('authserver_token_state', to_jsonb(OLD) ->> TG_ARGV[0]);
        RETURN NULL;
    END
"""


def upgrade():
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(FUNCTION.format(body=ONE_COLUMN))


def downgrade():
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(FUNCTION.format(body=WHOLE_ROW))
