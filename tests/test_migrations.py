"""The migrations build exactly the schema the models describe, and undo it again."""

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
from authserver.models import Base
from authserver.tenancy import service as tenants
from authserver.tokens import service as tokens
from tests.fixtures.database import app_config


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
