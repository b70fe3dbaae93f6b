def test_healthz_answers_without_a_key(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_reports_the_database(client, db):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["database"] == "reachable"
