"""References between a tenant's rows: the schema keeps them in the tenant, and deleting a row
does to the rows naming it what it always did.

Every foreign key from one tenant-owned table to another includes ``tenant_id`` on both sides
(``authserver.models.tenant_reference``), so the database refuses a row of one tenant naming a
row of another, whatever code wrote it. Rows are written and deleted here in SQL, as a bug or an
operator could, not through the services, which never do either.
"""

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from authserver.accounts import service as accounts
from authserver.extensions import db
from authserver.launch import service as launches
from authserver.models import Base
from authserver.oauth import service as codes
from authserver.tokens import service as tokens
from authserver.tokens.models import IssuedToken
from tests.test_isolation import rows
from tests.test_isolation import tenant_owned_tables

# Every reference from a tenant-owned row to another: (table, column, the table it names).
REFERENCES = (
    ("clients", "service_account_id", "users"),
    ("login_sessions", "user_id", "users"),
    ("authorization_codes", "client_pk", "clients"),
    ("authorization_codes", "user_id", "users"),
    ("authorization_codes", "login_session_id", "login_sessions"),
    ("issued_tokens", "client_pk", "clients"),
    ("issued_tokens", "user_id", "users"),
    ("issued_tokens", "login_session_id", "login_sessions"),
    ("launches", "client_pk", "clients"),
)
TABLES = ("users", "clients", "login_sessions", "authorization_codes", "issued_tokens", "launches")


def rows_naming_each_other(tenant, make_user, make_client):
    """One row of each of :data:`TABLES` in ``tenant``, naming each other; their ids by table.

    The app's login has a code and a refresh token; a launch is bound to the app.
    """
    user = make_user(tenant, "rosa")
    app_client = make_client(tenant).client
    _, login = accounts.start_session(tenant, user)
    decided = codes.CodeRequest(
        client=app_client,
        user=user,
        login=login,
        redirect_uri=app_client.redirect_uris[0],
        scope="openid",
        context={},
    )
    code = codes.save_code(tenant, codes.new_code(), decided)
    authorization = tokens.Authorization(
        tenant, app_client, "openid", user=user, login_session_id=login.id
    )
    tokens.issue_refresh_token(authorization)
    (token,) = rows(IssuedToken, tenant)
    _, launch = launches.create_launch(
        tenant, patient="123", client_id=app_client.client_id, actor="test"
    )
    made = (user, app_client, login, code, token, launch)
    ids = {table: row.id for table, row in zip(TABLES, made, strict=True)}
    db.session.commit()
    return ids


@pytest.fixture
def own(tenant, make_user, make_client):
    return rows_naming_each_other(tenant, make_user, make_client)


@pytest.fixture
def theirs(other_tenant, make_user, make_client):
    return rows_naming_each_other(other_tenant, make_user, make_client)


def write(statement, **values):
    with db.engine.begin() as connection:
        connection.execute(text(statement), values)


def named(table, column, row_id):
    with db.engine.connect() as connection:
        query = text(f"SELECT {column} FROM {table} WHERE id = :id")  # noqa: S608
        return connection.execute(query, {"id": row_id}).scalar()


def counts(tenant):
    with db.engine.connect() as connection:
        return {
            table: connection.execute(
                text(f"SELECT count(*) FROM {table} WHERE tenant_id = :id"),  # noqa: S608
                {"id": tenant.id},
            ).scalar()
            for table in TABLES
        }


def logins_named(ids):
    return {
        table: named(table, "login_session_id", ids[table])
        for table in ("authorization_codes", "issued_tokens")
    }


# --- Another tenant's row is refused -----------------------------------------------------------


@pytest.mark.parametrize(("table", "column", "target"), REFERENCES)
def test_the_database_refuses_a_reference_to_another_tenants_row(
    own, theirs, table, column, target
):
    """Whatever code writes it: a row of clinic A names a row of A, never one of B."""
    name_target = f"UPDATE {table} SET {column} = :target WHERE id = :id"  # noqa: S608

    write(name_target, target=own[target], id=own[table])  # A's own: taken
    with pytest.raises(IntegrityError):
        write(name_target, target=theirs[target], id=own[table])

    assert named(table, column, own[table]) == own[target]


def test_every_reference_between_tenant_owned_tables_is_bound_to_the_tenant():
    """A foreign key from one tenant-owned table to another includes ``tenant_id`` on both
    sides, and has its test above. A key on the column alone is only there, beside the bound
    one, to set the column NULL (``authserver.models.tenant_reference_set_null``)."""
    tenant_owned = tenant_owned_tables()
    bound, set_null = set(), set()
    for name in tenant_owned:
        for key in Base.metadata.tables[name].foreign_key_constraints:
            target = key.referred_table.name
            if target not in tenant_owned:
                continue
            columns = [column.name for column in key.columns]
            referred = [element.column.name for element in key.elements]
            if columns[0] == "tenant_id" and referred == ["tenant_id", "id"]:
                bound.add((name, columns[1], target))
            else:
                assert key.ondelete == "SET NULL", (name, columns, target)
                set_null.add((name, *columns, target))
    user_roles = {("user_roles", "user_id", "users"), ("user_roles", "role_id", "roles")}

    assert bound - user_roles == set(REFERENCES)
    assert set_null <= bound


# --- What a delete does to the rows naming what it deletes ---------------------------------------


def test_an_ended_login_leaves_its_codes_and_tokens_naming_it(tenant, own):
    """An ``online_access`` refresh token ends with its login by reading it there."""
    rosa = accounts.get_user(tenant, "rosa")
    assert accounts.set_password(tenant, rosa, "another sturdy passphrase") == 1
    db.session.commit()

    assert logins_named(own) == {
        "authorization_codes": own["login_sessions"],
        "issued_tokens": own["login_sessions"],
    }


def test_a_deleted_login_leaves_its_codes_and_tokens_without_one(tenant, other_tenant, own, theirs):
    before = counts(tenant)

    write("DELETE FROM login_sessions WHERE id = :id", id=own["login_sessions"])

    assert logins_named(own) == {"authorization_codes": None, "issued_tokens": None}
    assert counts(tenant) == {**before, "login_sessions": 0}
    assert logins_named(theirs) == {
        "authorization_codes": theirs["login_sessions"],
        "issued_tokens": theirs["login_sessions"],
    }


def test_a_deleted_user_takes_their_logins_codes_and_tokens(tenant, other_tenant, own, theirs):
    before_at_b = counts(other_tenant)

    write("DELETE FROM users WHERE id = :id", id=own["users"])

    gone = dict.fromkeys(("users", "login_sessions", "authorization_codes", "issued_tokens"), 0)
    assert counts(tenant) == {"clients": 1, "launches": 1, **gone}
    assert counts(other_tenant) == before_at_b


def test_a_user_who_is_a_clients_service_account_is_not_deleted(tenant, own):
    write(
        "UPDATE clients SET service_account_id = :user WHERE id = :id",
        user=own["users"],
        id=own["clients"],
    )
    before = counts(tenant)

    with pytest.raises(IntegrityError):
        write("DELETE FROM users WHERE id = :id", id=own["users"])

    assert counts(tenant) == before


def test_a_deleted_client_takes_its_codes_tokens_and_launches(tenant, other_tenant, own, theirs):
    before_at_b = counts(other_tenant)

    write("DELETE FROM clients WHERE id = :id", id=own["clients"])

    gone = dict.fromkeys(("clients", "authorization_codes", "issued_tokens", "launches"), 0)
    assert counts(tenant) == {"users": 1, "login_sessions": 1, **gone}
    assert counts(other_tenant) == before_at_b


def test_a_deleted_tenant_takes_every_row_of_it(tenant, other_tenant, own, theirs):
    before_at_b = counts(other_tenant)

    write("DELETE FROM tenants WHERE id = :id", id=tenant.id)

    assert counts(tenant) == dict.fromkeys(TABLES, 0)
    assert counts(other_tenant) == before_at_b
