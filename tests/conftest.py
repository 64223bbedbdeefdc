"""A fresh app per test, built by the real factory on a database made by the real migrations.

``AUTHSERVER_TEST_DATABASE=postgresql`` runs the whole suite on a throwaway PostgreSQL cluster
instead of SQLite.
"""

pytest_plugins = [
    "tests.fixtures.database",
    "tests.fixtures.tenancy",
    "tests.fixtures.accounts",
    "tests.fixtures.clients",
    "tests.fixtures.live",
    "tests.fixtures.tokens",
    "tests.fixtures.assertions",
    "tests.fixtures.network",
]
