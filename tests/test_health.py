"""Liveness and readiness, as a load balancer or orchestrator probes them."""


def test_healthz_answers_while_the_process_lives(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json == {"status": "ok"}


def test_readyz_answers_200_with_the_database_up(client):
    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.json == {"status": "ready", "database": "ok"}


def test_readyz_answers_503_when_the_database_is_unreachable(make_app):
    app = make_app(AUTHSERVER_DATABASE_URL="sqlite:////nonexistent-dir/authserver.sqlite")
    probe = app.test_client()

    response = probe.get("/readyz")

    assert response.status_code == 503
    assert response.json == {"status": "unavailable", "database": "unreachable"}
    assert probe.get("/healthz").status_code == 200
