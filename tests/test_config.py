"""Deployment settings: production refuses to start without its secrets, development makes them."""

import base64
import logging
import stat

import pytest
from click.testing import CliRunner

from authserver import config
from authserver import create_app
from authserver.cli import main
from authserver.config import ConfigError
from authserver.extensions import db
from authserver.tenancy.urls import TenantURLs
from authserver.tokens.limits import ASSUMED_URL_LENGTH
from tests.fixtures.accounts import DUMMY_PASSWORD
from tests.fixtures.accounts import csrf_token
from tests.fixtures.database import FreshContextClient

KEK = base64.b64encode(b"e" * 32).decode()


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    """The developer's shell must not decide these tests: start from no AUTHSERVER_* settings."""
    for name in config.DEFAULTS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def settings(tmp_path):
    """A complete production configuration, to which each test makes its one change."""
    return {
        "AUTHSERVER_ENV": "production",
        "AUTHSERVER_INSTANCE_PATH": str(tmp_path / "instance"),
        "AUTHSERVER_DATABASE_URL": f"sqlite:///{tmp_path / 'config.sqlite'}",
        "AUTHSERVER_KEY_ENCRYPTION_KEY": KEK,
        "AUTHSERVER_SECRET_KEY": "a-long-random-session-secret-0123456789",
    }


def test_production_starts_with_its_secrets(settings):
    app = create_app(settings)

    assert app.config["AUTHSERVER_KEY_ENCRYPTION_KEYS"] == [b"e" * 32]
    assert app.config["SECRET_KEY"] == "a-long-random-session-secret-0123456789"


@pytest.mark.parametrize("missing", ["AUTHSERVER_KEY_ENCRYPTION_KEY", "AUTHSERVER_SECRET_KEY"])
def test_production_without_a_secret_fails_at_start_saying_how_to_fix_it(
    settings, missing, tmp_path
):
    del settings[missing]

    with pytest.raises(ConfigError) as refused:
        create_app(settings)

    message = str(refused.value)
    assert missing in message
    assert "openssl rand -base64 32" in message
    assert not (tmp_path / "instance" / missing.lower()).exists()


@pytest.mark.parametrize(
    "kek",
    [
        "not a key",
        base64.b64encode(b"k" * 16).decode(),
        base64.b64encode(b"k" * 31).decode(),
        base64.b64encode(b"k" * 33).decode(),
        f"{KEK},{base64.b64encode(b'short').decode()}",
        # 32 bytes once the stray characters are dropped: a paste gone wrong, not a key
        KEK[:20] + "!?" + KEK[20:],
    ],
    ids=["garbage", "16-bytes", "31-bytes", "33-bytes", "second-of-two-malformed", "stray"],
)
def test_a_malformed_key_encryption_key_is_refused(settings, kek):
    settings["AUTHSERVER_KEY_ENCRYPTION_KEY"] = kek

    with pytest.raises(ConfigError) as refused:
        create_app(settings)

    assert "AUTHSERVER_KEY_ENCRYPTION_KEY is malformed" in str(refused.value)
    assert "openssl rand -base64 32" in str(refused.value)


def test_a_short_secret_key_is_refused_in_production(settings):
    settings["AUTHSERVER_SECRET_KEY"] = "password1"

    with pytest.raises(ConfigError) as refused:
        create_app(settings)

    assert "AUTHSERVER_SECRET_KEY is shorter than 32 characters" in str(refused.value)
    assert "openssl rand -base64 32" in str(refused.value)
    assert "password1" not in str(refused.value)


def test_a_key_encryption_key_without_padding_or_in_the_url_alphabet_is_read(settings):
    key = bytes(range(200, 232))
    settings["AUTHSERVER_KEY_ENCRYPTION_KEY"] = base64.urlsafe_b64encode(key).decode().rstrip("=")

    assert create_app(settings).config["AUTHSERVER_KEY_ENCRYPTION_KEYS"] == [key]


def test_several_key_encryption_keys_the_first_encrypts(settings):
    older = base64.urlsafe_b64encode(b"o" * 32).decode()
    settings["AUTHSERVER_KEY_ENCRYPTION_KEY"] = f"{KEK}, {older}"

    app = create_app(settings)

    assert app.config["AUTHSERVER_KEY_ENCRYPTION_KEYS"] == [b"e" * 32, b"o" * 32]


@pytest.mark.parametrize(
    "public_url",
    [
        "auth.example.org",
        "/auth",
        "https://",
        "ftp://auth.example.org",
        "https://auth.example.org/?tenant=1",
        "https://auth.example.org/auth#top",
        "https://auth.example.org:99999",
    ],
)
def test_a_public_url_that_paths_cannot_be_appended_to_is_refused(settings, public_url):
    settings["AUTHSERVER_PUBLIC_URL"] = public_url

    with pytest.raises(ConfigError) as refused:
        create_app(settings)

    assert f"AUTHSERVER_PUBLIC_URL {public_url!r}" in str(refused.value)
    assert "for example https://auth.example.org" in str(refused.value)


def test_production_refuses_plain_http_on_a_public_host(settings):
    settings["AUTHSERVER_PUBLIC_URL"] = "http://auth.example.org"

    with pytest.raises(ConfigError, match="plain http"):
        create_app(settings)


@pytest.mark.parametrize(
    "public_url", ["http://localhost:5000", "http://127.0.0.1:8000/auth", "http://[::1]:5000"]
)
def test_production_serves_plain_http_on_a_loopback_host(settings, public_url):
    settings["AUTHSERVER_PUBLIC_URL"] = public_url

    app = create_app(settings)

    assert app.config["AUTHSERVER_PUBLIC_URL"] == public_url


def test_development_serves_plain_http_on_any_host(settings):
    settings["AUTHSERVER_ENV"] = "development"
    settings["AUTHSERVER_PUBLIC_URL"] = "http://devbox.internal:5000/"

    app = create_app(settings)

    assert app.config["AUTHSERVER_PUBLIC_URL"] == "http://devbox.internal:5000"


# The longest public URL a token has room for: its issuer, {this}/t/{63-character slug}, and the
# default FHIR base URL, {issuer}/fhir, take at most ASSUMED_URL_LENGTH (tokens/limits.py).
PUBLIC_URL_AT_BOUND = "https://auth.example.org/" + "p" * (185 - len("https://auth.example.org/"))


def test_a_public_url_too_long_for_a_token_is_refused_at_start_saying_the_limit(settings):
    settings["AUTHSERVER_PUBLIC_URL"] = PUBLIC_URL_AT_BOUND + "p"

    with pytest.raises(ConfigError) as refused:
        create_app(settings)

    message = str(refused.value)
    assert message.startswith(f"AUTHSERVER_PUBLIC_URL {PUBLIC_URL_AT_BOUND + 'p'!r} takes 186 ")
    assert "more than 185: an access token has 256 for the issuer" in message
    assert "for example https://auth.example.org" in message


def test_the_authserver_command_refuses_a_public_url_too_long_in_one_line(settings):
    environment = {**settings, "AUTHSERVER_PUBLIC_URL": PUBLIC_URL_AT_BOUND + "p"}

    result = CliRunner().invoke(main, ["tenant", "list"], env=environment)

    assert result.exit_code == 1
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("Error: AUTHSERVER_PUBLIC_URL ") and "more than 185" in line


def test_a_public_url_counts_as_a_token_writes_it(settings):
    """A non-ASCII character takes 6 in a token's JSON: 181 characters here are 186 there."""
    settings["AUTHSERVER_PUBLIC_URL"] = PUBLIC_URL_AT_BOUND[:-5] + "é"

    with pytest.raises(ConfigError, match="takes 186 characters as a token writes it"):
        create_app(settings)


def test_a_public_url_at_its_bound_is_accepted(settings):
    assert len(PUBLIC_URL_AT_BOUND) == config.MAX_PUBLIC_URL_LENGTH
    settings["AUTHSERVER_PUBLIC_URL"] = PUBLIC_URL_AT_BOUND + "/"  # the / is not kept

    app = create_app(settings)

    public_url = app.config["AUTHSERVER_PUBLIC_URL"]
    assert public_url == PUBLIC_URL_AT_BOUND
    urls = TenantURLs(public_url, "s" * 63)
    assert len(urls.issuer) < len(urls.fhir_base_url) == ASSUMED_URL_LENGTH


def test_an_unknown_environment_is_refused(settings):
    settings["AUTHSERVER_ENV"] = "staging"

    with pytest.raises(ConfigError, match="AUTHSERVER_ENV must be one of production, development"):
        create_app(settings)


def test_development_generates_the_kek_once_into_the_instance_folder(settings, tmp_path, caplog):
    del settings["AUTHSERVER_KEY_ENCRYPTION_KEY"], settings["AUTHSERVER_SECRET_KEY"]
    settings["AUTHSERVER_ENV"] = "development"
    kek_file = tmp_path / "instance" / "authserver_key_encryption_key"

    with caplog.at_level(logging.WARNING, logger="authserver.config"):
        first = create_app(settings)

    assert kek_file.exists()
    assert stat.S_IMODE(kek_file.stat().st_mode) == 0o600
    assert first.config["AUTHSERVER_KEY_ENCRYPTION_KEY"] == kek_file.read_text().strip()
    assert len(first.config["AUTHSERVER_KEY_ENCRYPTION_KEYS"][0]) == 32
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any("AUTHSERVER_KEY_ENCRYPTION_KEY" in r.getMessage() for r in warnings)
    assert all("never use this in production" in r.getMessage() for r in warnings)

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="authserver.config"):
        second = create_app(settings)

    kek = "AUTHSERVER_KEY_ENCRYPTION_KEY"
    assert second.config[kek] == first.config[kek]
    assert second.config["SECRET_KEY"] == first.config["SECRET_KEY"]
    assert not caplog.records


def test_development_keeps_explicit_secrets(settings, tmp_path):
    settings["AUTHSERVER_ENV"] = "development"

    app = create_app(settings)

    assert app.config["AUTHSERVER_KEY_ENCRYPTION_KEY"] == KEK
    assert not (tmp_path / "instance" / "authserver_key_encryption_key").exists()


def test_settings_come_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("AUTHSERVER_INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.setenv("AUTHSERVER_DATABASE_URL", f"sqlite:///{tmp_path / 'env.sqlite'}")
    monkeypatch.setenv("AUTHSERVER_KEY_ENCRYPTION_KEY", KEK)
    monkeypatch.setenv("AUTHSERVER_SECRET_KEY", "secret-from-the-environment-0123456789")
    monkeypatch.setenv("AUTHSERVER_PUBLIC_URL", "https://env.example.test/")
    monkeypatch.setenv("AUTHSERVER_ARGON2_TIME_COST", "5")
    monkeypatch.setenv("AUTHSERVER_LOGIN_SESSION_LIFETIME", "600")

    app = create_app()

    assert app.config["AUTHSERVER_ENV"] == "production"
    assert app.config["SECRET_KEY"] == "secret-from-the-environment-0123456789"
    assert app.config["AUTHSERVER_PUBLIC_URL"] == "https://env.example.test"
    assert app.config["AUTHSERVER_ARGON2_TIME_COST"] == 5
    assert app.config["AUTHSERVER_LOGIN_SESSION_LIFETIME"] == 600
    assert app.extensions["authserver.passwords"].hasher.time_cost == 5
    assert app.instance_path == str(tmp_path / "instance")


def test_overrides_win_over_the_environment(monkeypatch, settings):
    monkeypatch.setenv("AUTHSERVER_PUBLIC_URL", "https://env.example.test")
    monkeypatch.setenv("AUTHSERVER_ARGON2_TIME_COST", "5")

    settings["AUTHSERVER_PUBLIC_URL"] = "https://override.example.test"
    settings["AUTHSERVER_ARGON2_TIME_COST"] = 2

    app = create_app(settings)

    assert app.config["AUTHSERVER_PUBLIC_URL"] == "https://override.example.test"
    assert app.config["AUTHSERVER_ARGON2_TIME_COST"] == 2


def test_a_non_integer_in_an_integer_setting_is_refused(monkeypatch, settings):
    monkeypatch.setenv("AUTHSERVER_ARGON2_TIME_COST", "three")

    with pytest.raises(ConfigError, match="expected an integer"):
        create_app(settings)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("AUTHSERVER_JWKS_FETCH_TIMEOUT", 0),  # requests raises ValueError: a 500 per token
        ("AUTHSERVER_JWKS_FETCH_TIMEOUT", -1.0),
        ("AUTHSERVER_JWKS_MAX_BYTES", 0),
        ("AUTHSERVER_JWKS_MIN_REFETCH_INTERVAL", -1),
        ("AUTHSERVER_JWKS_DEFAULT_MAX_AGE", -1),
        ("AUTHSERVER_JWKS_MAX_AGE_LIMIT", -1),
        ("AUTHSERVER_LOGIN_SESSION_LIFETIME", 0),
        ("AUTHSERVER_ARGON2_TIME_COST", 0),  # argon2 refuses to hash: every login a 500
        ("AUTHSERVER_ARGON2_PARALLELISM", 0),
        ("AUTHSERVER_ARGON2_MEMORY_COST", 8),  # below 8 KiB per lane (4 lanes)
        ("AUTHSERVER_INTROSPECTION_CACHE_SECONDS", -5.0),
        ("AUTHSERVER_EXPIRED_ROW_RETENTION", -1),  # rows forgotten before they expire
        ("AUTHSERVER_MAX_REQUEST_BYTES", 0),  # every request with a body refused
    ],
)
def test_a_setting_out_of_its_range_is_refused_at_start(settings, name, value):
    settings[name] = value

    with pytest.raises(ConfigError, match=name):
        create_app(settings)


def test_the_default_database_is_sqlite_in_the_instance_folder(settings, tmp_path):
    del settings["AUTHSERVER_DATABASE_URL"]

    app = create_app(settings)

    expected = f"sqlite:///{tmp_path / 'instance' / 'authserver.sqlite'}"
    assert app.config["SQLALCHEMY_DATABASE_URI"] == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://auth@db.test/auth", "postgresql+psycopg://auth@db.test/auth"),
        ("postgres://auth@db.test/auth", "postgresql+psycopg://auth@db.test/auth"),
        ("postgresql+psycopg://auth@db/authserver", "postgresql+psycopg://auth@db/authserver"),
        ("sqlite:////var/lib/authserver.sqlite", "sqlite:////var/lib/authserver.sqlite"),
    ],
)
def test_postgresql_urls_use_the_psycopg_driver(settings, url, expected):
    settings["AUTHSERVER_DATABASE_URL"] = url

    app = create_app(settings)

    assert app.config["SQLALCHEMY_DATABASE_URI"] == expected
    with app.app_context():
        assert db.engine.dialect.name == expected.split(":")[0].split("+")[0]
        if db.engine.dialect.name == "postgresql":
            assert db.engine.dialect.driver == "psycopg"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("true", True), ("1", True), ("Yes", True), ("on", True), ("false", False), ("0", False)],
)
def test_an_on_off_setting_is_read_from_the_environment(monkeypatch, settings, value, expected):
    monkeypatch.setenv("AUTHSERVER_JWKS_URI_ALLOW_PRIVATE", value)

    app = create_app(settings)

    assert app.config["AUTHSERVER_JWKS_URI_ALLOW_PRIVATE"] is expected
    assert app.extensions["authserver.jwks_cache"].policy.allow_private is expected


def test_an_on_off_setting_that_is_neither_is_refused_naming_it(monkeypatch, settings):
    monkeypatch.setenv("AUTHSERVER_JWKS_URI_ALLOW_PRIVATE", "maybe")

    with pytest.raises(ConfigError, match="AUTHSERVER_JWKS_URI_ALLOW_PRIVATE: expected true or"):
        create_app(settings)


def test_the_session_cookie_takes_its_name_from_the_environment(
    monkeypatch, make_app, tenant, make_user
):
    make_user(tenant, "alice")
    monkeypatch.setenv("AUTHSERVER_SESSION_COOKIE_NAME", "riverside_forms")
    app = make_app()
    app.test_client_class = FreshContextClient
    browser = app.test_client()

    page = browser.get("/t/clinic-a/login")

    cookies = [header.split("=", 1)[0] for header in page.headers.getlist("Set-Cookie")]
    assert cookies == ["riverside_forms"]
    # The form's CSRF secret is read back from that cookie: the sign-in passes its check.
    form = {"username": "alice", "password": DUMMY_PASSWORD}
    form["csrf_token"] = csrf_token(page.get_data(as_text=True))
    assert browser.post("/t/clinic-a/login", data=form).status_code == 303


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("", "is not a cookie name"),
        ("forms session", "is not a cookie name"),
        ("forms;Path=/", "is not a cookie name"),
        ("sessi\u00f6n", "is not a cookie name"),
        ("authserver_login", "is the login cookie's name"),
        ("__Host-forms", "starts with __Host-"),
        ("__secure-forms", "starts with __Secure-"),  # the default public URL is plain http
    ],
)
def test_a_session_cookie_name_browsers_would_not_send_back_is_refused(
    monkeypatch, settings, name, problem
):
    monkeypatch.setenv("AUTHSERVER_SESSION_COOKIE_NAME", name)

    with pytest.raises(ConfigError) as refused:
        create_app(settings)

    assert str(refused.value).startswith(f"AUTHSERVER_SESSION_COOKIE_NAME {name!r} {problem}")
    assert "the default is authserver_session" in str(refused.value)


def test_a_secure_prefixed_session_cookie_is_taken_over_https(settings):
    settings["AUTHSERVER_PUBLIC_URL"] = "https://auth.example.org"
    settings["AUTHSERVER_SESSION_COOKIE_NAME"] = "__Secure-forms"

    assert create_app(settings).config["SESSION_COOKIE_NAME"] == "__Secure-forms"
