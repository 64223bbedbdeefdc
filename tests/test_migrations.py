"""The migrations build exactly the schema the models describe, and undo it again."""

import jwt
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask import current_app
from flask_migrate import downgrade
from flask_migrate import upgrade
from sqlalchemy import inspect
from sqlalchemy import text

from authserver import create_app
from authserver.accounts import service as accounts
from authserver.clients import service as clients
from authserver.extensions import db
from authserver.launch import service as launches
from authserver.models import Base
from authserver.oauth import service as codes
from authserver.tenancy import service as tenants
from authserver.tokens import service as tokens
from tests.fixtures.database import app_config
from tests.fixtures.database import backend


def _migrated_app(make_database_url, tmp_path):
    return create_app(app_config(make_database_url("migrations"), tmp_path / "instance"))


def _differences():
    migrate = current_app.extensions["migrate"]
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts=migrate.configure_args)
        return compare_metadata(context, Base.metadata)


def _tables():
    return set(inspect(db.engine).get_table_names()) - {"alembic_version"}


def test_models_and_migrations_agree(make_database_url, tmp_path):
    app = _migrated_app(make_database_url, tmp_path)
    with app.app_context():
        upgrade(directory=app.extensions["migrate"].directory)
        try:
            assert _differences() == []
            assert _tables() == set(Base.metadata.tables)
        finally:
            db.engine.dispose()


def test_tenant_owned_tables_are_indexed_by_tenant_once(make_database_url, tmp_path):
    """A tenant's rows are found, and deleted with the tenant, through an index led by
    ``tenant_id``; an index on ``tenant_id`` alone next to a longer one is only a cost."""
    app = _migrated_app(make_database_url, tmp_path)
    with app.app_context():
        upgrade(directory=app.extensions["migrate"].directory)
        try:
            inspector = inspect(db.engine)
            led = {}
            for table in _tables():
                if "tenant_id" not in {column["name"] for column in inspector.get_columns(table)}:
                    continue
                indexes = inspector.get_indexes(table) + inspector.get_unique_constraints(table)
                led[table] = [
                    index["column_names"]
                    for index in indexes
                    if index["column_names"][:1] == ["tenant_id"]
                ]
        finally:
            db.engine.dispose()
    assert "issued_tokens" in led and "launches" in led
    assert [table for table, columns in led.items() if not columns] == []
    alone = [name for name, columns in led.items() if ["tenant_id"] in columns and len(columns) > 1]
    assert alone == []


def test_downgrade_to_base_removes_every_table_and_upgrade_works_again(make_database_url, tmp_path):
    app = _migrated_app(make_database_url, tmp_path)
    directory = app.extensions["migrate"].directory
    with app.app_context():
        try:
            upgrade(directory=directory)
            downgrade(directory=directory, revision="base")

            assert _tables() == set()

            upgrade(directory=directory)

            assert _tables() == set(Base.metadata.tables)
            assert _differences() == []
        finally:
            db.engine.dispose()


def test_the_service_account_revision_keeps_every_client_and_token(make_database_url, tmp_path):
    """It adds ``clients.service_account_id`` in place: rebuilding ``clients`` (Alembic's batch
    mode on SQLite) would drop it, and with foreign keys on the drop cascades to its tokens."""
    app = _migrated_app(make_database_url, tmp_path)
    directory = app.extensions["migrate"].directory
    with app.app_context():
        try:
            upgrade(directory=directory)
            tenant = tenants.create_tenant("clinic-m", "Clinic M")
            registration = clients.register(
                tenant,
                name="Lab",
                auth_method="private_key_jwt",
                jwks_uri="https://lab.example.test/jwks.json",
                scopes=["system/Patient.rs"],
            )
            authorization = tokens.Authorization(tenant, registration.client, "system/Patient.rs")
            tokens.issue_access_token(authorization)
            db.session.commit()
            db.session.remove()

            downgrade(directory=directory, revision="68265a9805a3")
            assert _counts() == {"clients": 1, "issued_tokens": 1}
            upgrade(directory=directory)

            assert _counts() == {"clients": 1, "issued_tokens": 1}
            assert _differences() == []
        finally:
            db.engine.dispose()


def test_the_one_active_key_revision_keeps_the_newest_signer_and_publishes_the_others(
    make_database_url, tmp_path
):
    app = _migrated_app(make_database_url, tmp_path)
    directory = app.extensions["migrate"].directory
    with app.app_context():
        try:
            upgrade(directory=directory)
            tenant_id = tenants.create_tenant("clinic-k", "Clinic K").id
            db.session.commit()
            db.session.remove()
            downgrade(directory=directory, revision="3b1f0e6c9d2a")
            with db.engine.begin() as connection:  # what a race could leave: two active signers
                connection.execute(
                    text(
                        "INSERT INTO signing_keys (tenant_id, kid, alg, status, public_jwk,"
                        " private_key_ciphertext, created_at)"
                        " SELECT tenant_id, 'raced', alg, status, public_jwk,"
                        " private_key_ciphertext, created_at FROM signing_keys"
                    )
                )

            upgrade(directory=directory)

            with db.engine.connect() as connection:
                rows = connection.execute(
                    text("SELECT kid, status FROM signing_keys WHERE tenant_id = :t ORDER BY id"),
                    {"t": tenant_id},
                ).all()
            assert [status for _, status in rows] == ["published", "active"]
            assert rows[-1].kid == "raced"
            assert _differences() == []
        finally:
            db.engine.dispose()


LAUNCH_RIGHT_REVISION_PARENT = "9c4e2b7a1d05"


def _launch_rights():
    with db.engine.connect() as connection:
        rows = connection.execute(text("SELECT name, kind, may_launch FROM clients ORDER BY id"))
        return [(name, kind, bool(right)) for name, kind, right in rows]


def test_the_launch_right_revision_lets_existing_resource_servers_keep_launching(
    make_database_url, tmp_path
):
    """Every resource server could launch before it: an EHR among them must keep working after
    the upgrade. Apps never launch; a resource server registered afterwards gets the right only
    when asked. The downgrade takes the column and nothing else."""
    app = _migrated_app(make_database_url, tmp_path)
    directory = app.extensions["migrate"].directory
    with app.app_context():
        try:
            upgrade(directory=directory)
            tenant = tenants.create_tenant("clinic-m", "Clinic M")
            for name in ("Gateway", "EHR"):
                clients.register(
                    tenant, name=name, kind="resource_server", auth_method="client_secret_basic"
                )
            clients.register(
                tenant, name="App", auth_method="none", redirect_uris=["https://app.test/cb"]
            )
            db.session.commit()
            db.session.remove()
            downgrade(directory=directory, revision=LAUNCH_RIGHT_REVISION_PARENT)
            columns = {column["name"] for column in inspect(db.engine).get_columns("clients")}
            assert "may_launch" not in columns
            assert _counts() == {"clients": 3, "issued_tokens": 0}

            upgrade(directory=directory)

            assert _launch_rights() == [
                ("Gateway", "resource_server", True),
                ("EHR", "resource_server", True),
                ("App", "app", False),
            ]
            tenant = tenants.get_tenant("clinic-m")
            clients.register(
                tenant, name="New", kind="resource_server", auth_method="client_secret_basic"
            )
            db.session.commit()
            assert _launch_rights()[-1] == ("New", "resource_server", False)
            assert _differences() == []
        finally:
            db.session.remove()
            db.engine.dispose()


def _counts():
    with db.engine.connect() as connection:
        return {
            table: connection.execute(text(f"SELECT count(*) FROM {table}")).scalar()  # noqa: S608
            for table in ("clients", "issued_tokens")
        }


def test_a_table_rebuild_keeps_the_rows_that_refer_to_it(make_database_url, tmp_path):
    """Revision eecb5fdc6bc5's downgrade drops a column of ``tenants``, which SQLite does by
    copying the table and dropping the old one: every tenant-owned row must survive that."""
    app = _migrated_app(make_database_url, tmp_path)
    directory = app.extensions["migrate"].directory
    with app.app_context():
        try:
            upgrade(directory=directory)
            tenant = tenants.create_tenant("clinic-r", "Clinic R")
            clients.register(
                tenant,
                name="App",
                auth_method="none",
                redirect_uris=["https://app.example.test/cb"],
            )
            db.session.commit()
            db.session.remove()

            downgrade(directory=directory, revision="289963bcb34b")
            assert _counts() == {"clients": 1, "issued_tokens": 0}
            upgrade(directory=directory)

            assert _counts() == {"clients": 1, "issued_tokens": 0}
            with db.engine.connect() as connection:
                roles = connection.execute(text("SELECT count(*) FROM roles")).scalar()
            assert roles > 0
        finally:
            db.engine.dispose()


USER_ROLES_REVISION_PARENT = "14fcbc3160ce"


def _links():
    with db.engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT users.username, tenants.slug, roles.name FROM user_roles"
                " JOIN users ON users.id = user_roles.user_id"
                " JOIN roles ON roles.id = user_roles.role_id"
                " JOIN tenants ON tenants.id = roles.tenant_id"
                " WHERE users.tenant_id = roles.tenant_id"
            )
        ).all()
    return sorted(tuple(row) for row in rows)


def test_the_user_roles_revision_keeps_every_link_in_its_users_tenant(make_database_url, tmp_path):
    app = _migrated_app(make_database_url, tmp_path)
    directory = app.extensions["migrate"].directory
    with app.app_context():
        try:
            upgrade(directory=directory)
            for slug, roles in (("clinic-u", ["nurse", "billing"]), ("clinic-v", ["physician"])):
                tenant = tenants.create_tenant(slug, slug.title())
                accounts.create_user(tenant, "rosa", "a sturdy passphrase", roles)
            db.session.commit()
            db.session.remove()
            held = [
                ("rosa", "clinic-u", "billing"),
                ("rosa", "clinic-u", "nurse"),
                ("rosa", "clinic-v", "physician"),
            ]
            assert _links() == held

            downgrade(directory=directory, revision=USER_ROLES_REVISION_PARENT)
            assert _links() == held
            upgrade(directory=directory)

            assert _links() == held
            with db.engine.connect() as connection:
                misfiled = connection.execute(
                    text(
                        "SELECT count(*) FROM user_roles JOIN users ON users.id = user_id"
                        " WHERE user_roles.tenant_id <> users.tenant_id"
                    )
                ).scalar()
            assert misfiled == 0
            assert _differences() == []
        finally:
            db.engine.dispose()


def test_the_user_roles_revision_stops_at_a_link_across_tenants(make_database_url, tmp_path, capfd):
    """Such a row is a leak already; which side is wrong is the operator's call, so the
    upgrade changes nothing and says how to find it."""
    app = _migrated_app(make_database_url, tmp_path)
    directory = app.extensions["migrate"].directory
    with app.app_context():
        try:
            upgrade(directory=directory)
            clinic_u = tenants.create_tenant("clinic-u", "Clinic U")
            clinic_v = tenants.create_tenant("clinic-v", "Clinic V")
            rosa = accounts.create_user(clinic_u, "rosa", "a sturdy passphrase", ["nurse"])
            link = {"user_id": rosa.id, "role_id": accounts.get_role(clinic_v, "physician").id}
            db.session.commit()
            db.session.remove()
            downgrade(directory=directory, revision=USER_ROLES_REVISION_PARENT)
            with db.engine.begin() as connection:  # what a bug could have written before
                connection.execute(
                    text("INSERT INTO user_roles (user_id, role_id) VALUES (:user_id, :role_id)"),
                    link,
                )

            with pytest.raises(SystemExit):
                upgrade(directory=directory)

            assert "Error: 1 user_roles row(s) link a user to a role of another tenant" in (
                capfd.readouterr().err
            )

            with db.engine.connect() as connection:
                version = connection.execute(text("SELECT version_num FROM alembic_version"))
                assert version.scalar() == USER_ROLES_REVISION_PARENT
                assert connection.execute(text("SELECT count(*) FROM user_roles")).scalar() == 2
        finally:
            db.engine.dispose()


@pytest.mark.skipif(backend() != "postgresql", reason="trigger order is PostgreSQL's")
def test_a_deleted_login_leaves_no_reference_whatever_order_its_keys_were_made_in(
    make_database_url, tmp_path
):
    """PostgreSQL runs a table's foreign key triggers in the order of their names, which follow
    their creation. Were the tenant-bound key on ``login_session_id`` checked with the statement,
    a key on the column alone made after it (by a restore, a later migration) would set the
    column NULL too late and the delete would fail: it is checked at commit."""
    app = _migrated_app(make_database_url, tmp_path)
    with app.app_context():
        try:
            upgrade(directory=app.extensions["migrate"].directory)
            tenant = tenants.create_tenant("clinic-l", "Clinic L")
            rosa = accounts.create_user(tenant, "rosa", "a sturdy passphrase", ["nurse"])
            app_client = clients.register(
                tenant, name="App", auth_method="none", redirect_uris=["https://app.test/cb"]
            ).client
            _, login = accounts.start_session(tenant, rosa)
            callback = app_client.redirect_uris[0]
            decided = codes.CodeRequest(app_client, rosa, login, callback, "openid", {})
            codes.save_code(tenant, codes.new_code(), decided)
            authorization = tokens.Authorization(
                tenant, app_client, "openid", user=rosa, login_session_id=login.id
            )
            tokens.issue_refresh_token(authorization)
            login_id = login.id
            db.session.commit()
            db.session.remove()
            with db.engine.begin() as connection:
                for table in ("authorization_codes", "issued_tokens"):
                    key = f"fk_{table}_login_session_id_login_sessions"
                    connection.execute(text(f"ALTER TABLE {table} DROP CONSTRAINT {key}"))
                    connection.execute(
                        text(
                            f"ALTER TABLE {table} ADD CONSTRAINT {key} FOREIGN KEY"
                            " (login_session_id) REFERENCES login_sessions (id) ON DELETE SET NULL"
                        )
                    )

            with db.engine.begin() as connection:
                delete = text("DELETE FROM login_sessions WHERE id = :id")
                connection.execute(delete, {"id": login_id})

            with db.engine.connect() as connection:
                for table in ("authorization_codes", "issued_tokens"):
                    logins = connection.execute(
                        text(f"SELECT login_session_id FROM {table}")  # noqa: S608
                    ).scalars()
                    assert list(logins) == [None], table
        finally:
            db.engine.dispose()


TENANT_REFERENCES_REVISION_PARENT = "bd1ac993c61d"
REFERENCES = (
    ("clients", "service_account_id"),
    ("login_sessions", "user_id"),
    ("authorization_codes", "client_pk"),
    ("authorization_codes", "user_id"),
    ("authorization_codes", "login_session_id"),
    ("issued_tokens", "client_pk"),
    ("issued_tokens", "user_id"),
    ("issued_tokens", "login_session_id"),
    ("launches", "client_pk"),
)


def _clinic_with_rows_naming_each_other(slug):
    """A tenant with a service account's backend client, an app, and a login's code, refresh
    token and EHR launch for the app; returns the tenant."""
    tenant = tenants.create_tenant(slug, slug.title())
    rosa = accounts.create_user(tenant, "rosa", "a sturdy passphrase", ["nurse"])
    clients.register(
        tenant,
        name="Lab",
        auth_method="private_key_jwt",
        jwks_uri="https://lab.example.test/jwks.json",
        scopes=["system/Patient.rs"],
        service_account="rosa",
    )
    app_client = clients.register(
        tenant, name="App", auth_method="none", redirect_uris=["https://app.test/cb"]
    ).client
    _, login = accounts.start_session(tenant, rosa)
    callback = app_client.redirect_uris[0]
    codes.save_code(
        tenant,
        codes.new_code(),
        codes.CodeRequest(app_client, rosa, login, callback, "openid", {}),
    )
    tokens.issue_refresh_token(
        tokens.Authorization(tenant, app_client, "openid", user=rosa, login_session_id=login.id)
    )
    launches.create_launch(tenant, patient="123", client_id=app_client.client_id, actor="test")
    return tenant


def _references():
    """Every referring row's tenant and the row it names, by table and column."""
    with db.engine.connect() as connection:
        return {
            (table, column): connection.execute(
                text(f"SELECT id, tenant_id, {column} FROM {table} ORDER BY id")  # noqa: S608
            ).all()
            for table, column in REFERENCES
        }


def test_the_tenant_references_revision_keeps_every_row_and_what_it_names(
    make_database_url, tmp_path
):
    app = _migrated_app(make_database_url, tmp_path)
    directory = app.extensions["migrate"].directory
    with app.app_context():
        try:
            upgrade(directory=directory)
            for slug in ("clinic-u", "clinic-v"):
                _clinic_with_rows_naming_each_other(slug)
            db.session.commit()
            db.session.remove()
            held = _references()
            naming = [row for rows in held.values() for row in rows if row[2] is not None]
            assert len(naming) == 2 * len(REFERENCES)  # each reference once in each tenant

            downgrade(directory=directory, revision=TENANT_REFERENCES_REVISION_PARENT)
            assert _references() == held
            upgrade(directory=directory)

            assert _references() == held
            assert _differences() == []
        finally:
            db.engine.dispose()


def test_the_tenant_references_revision_stops_at_a_row_naming_another_tenants(
    make_database_url, tmp_path, capfd
):
    """As the user_roles revision does: the upgrade changes nothing and says how to find them."""
    app = _migrated_app(make_database_url, tmp_path)
    directory = app.extensions["migrate"].directory
    with app.app_context():
        try:
            upgrade(directory=directory)
            clinic_u = _clinic_with_rows_naming_each_other("clinic-u")
            clinic_v = _clinic_with_rows_naming_each_other("clinic-v")
            ids = {"u": clinic_u.id, "v": clinic_v.id}
            db.session.commit()
            db.session.remove()
            downgrade(directory=directory, revision=TENANT_REFERENCES_REVISION_PARENT)
            with db.engine.begin() as connection:  # what a bug could have written before
                connection.execute(
                    text(
                        "UPDATE issued_tokens SET client_pk ="
                        " (SELECT max(id) FROM clients WHERE tenant_id = :v)"
                        " WHERE tenant_id = :u"
                    ),
                    ids,
                )
            held = _references()

            with pytest.raises(SystemExit):
                upgrade(directory=directory)

            error = capfd.readouterr().err
            assert "Error: rows name a row of another tenant: 1 in issued_tokens.client_pk" in (
                error
            )
            assert (
                '(find them with "SELECT issued_tokens.id FROM issued_tokens JOIN clients'
                " ON clients.id = issued_tokens.client_pk"
                ' WHERE clients.tenant_id <> issued_tokens.tenant_id")'
            ) in error
            assert "login_sessions.user_id" not in error
            with db.engine.connect() as connection:
                version = connection.execute(text("SELECT version_num FROM alembic_version"))
                assert version.scalar() == TENANT_REFERENCES_REVISION_PARENT
            assert _references() == held
        finally:
            db.engine.dispose()


OPAQUE_SUBJECT_REVISION_PARENT = "117c253dd27e"


def _subjects():
    with db.engine.connect() as connection:
        return connection.execute(text("SELECT id, subject FROM users ORDER BY id")).all()


def test_the_opaque_subject_revision_keeps_the_sub_of_every_user_made_before_it(
    make_database_url, tmp_path
):
    """Users made before it keep ``str(id)``, the ``sub`` their tokens carried, so an app that
    keyed its accounts on ``sub`` still finds them; and SQLite's rebuild of ``users`` keeps
    every row that names a user. Users made after it get a random subject."""
    app = _migrated_app(make_database_url, tmp_path)
    directory = app.extensions["migrate"].directory
    with app.app_context():
        try:
            upgrade(directory=directory)
            for slug in ("clinic-u", "clinic-v"):
                _clinic_with_rows_naming_each_other(slug)
            db.session.commit()
            db.session.remove()
            held = _references()
            downgrade(directory=directory, revision=OPAQUE_SUBJECT_REVISION_PARENT)
            columns = {column["name"] for column in inspect(db.engine).get_columns("users")}
            assert "subject" not in columns
            assert _references() == held

            upgrade(directory=directory)

            subjects = _subjects()
            assert len(subjects) == 2
            assert [subject for _, subject in subjects] == [str(id_) for id_, _ in subjects]
            assert _references() == held
            assert _differences() == []
            tenant = tenants.get_tenant("clinic-u")
            rosa = accounts.get_user(tenant, "rosa")
            app_client = next(c for c in clients.list_clients(tenant) if c.name == "App")
            authorization = tokens.Authorization(tenant, app_client, "openid", user=rosa)
            token = tokens.issue_access_token(authorization)["access_token"]
            assert jwt.decode(token, options={"verify_signature": False})["sub"] == str(rosa.id)
            newcomer = accounts.create_user(tenant, "sam", "a sturdy passphrase", ["nurse"])
            assert newcomer.subject != str(newcomer.id)
            db.session.commit()
        finally:
            db.engine.dispose()
