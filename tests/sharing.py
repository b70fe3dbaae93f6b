"""Helpers for the share, public page and email tests: everything through HTTP."""

from urllib.parse import urlsplit


def mint(api, render, **body):
    response = api.post(f"/v1/renders/{render.id}/shares", body, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def token_of(share_json: dict) -> str:
    path = urlsplit(share_json["url"]).path
    assert path.startswith("/s/")
    return path.removeprefix("/s/")


def engagement(api, render) -> dict:
    response = api.get(f"/v1/renders/{render.id}/engagement")
    assert response.status_code == 200, response.content
    return response.json()


def without_request_id(body: dict) -> dict:
    error = dict(body["error"])
    error.pop("requestId")
    return {"error": error}
