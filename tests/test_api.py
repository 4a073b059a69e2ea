"""The REST API's contract: status codes, Location, and JSON errors that name the field."""

from __future__ import annotations

from tests.conftest import Service


async def error_of(response) -> dict:
    body = await response.json()
    assert set(body) == {"error"}
    return body["error"]


async def test_malformed_json_names_the_body(service: Service):
    async with service.http.post(f"{service.url}/v1/jobs", data=b"{nope") as response:
        assert response.status == 400
        assert (await error_of(response))["field"] == "body"


async def test_missing_and_bad_fields_are_named(service: Service):
    cases = [
        ({"target": {"region": "RegionTwo"}}, "source"),
        ({"source": {"region": "RegionOne", "container": "c", "object": "o"},
          "target": {"region": "Mars"}}, "target.region"),
        ({"source": {"region": "RegionOne", "container": "a/b", "object": "o"},
          "target": {"region": "RegionTwo"}}, "source.container"),
    ]
    for body, field in cases:
        async with service.http.post(f"{service.url}/v1/jobs", json=body) as response:
            assert response.status == 400
            error = await error_of(response)
            assert error["field"] == field and error["code"] == "invalid_request"


async def test_body_over_the_limit_is_413(service: Service):
    async with service.http.post(f"{service.url}/v1/jobs", data=b"x" * (1 << 20)) as response:
        assert response.status == 413
        assert (await error_of(response))["field"] == "body"


async def test_unknown_route_and_method_answer_json(service: Service):
    async with service.http.get(f"{service.url}/v1/nothing") as response:
        assert response.status == 404
        assert (await error_of(response))["code"] == "not_found"
    async with service.http.delete(f"{service.url}/v1/jobs") as response:
        assert response.status == 405
        assert (await error_of(response))["code"] == "method_not_allowed"
    async with service.http.get(f"{service.url}/v1/jobs/not-a-uuid") as response:
        assert response.status == 404


async def test_list_jobs_shows_submitted_jobs(service: Service):
    body = {"source": {"region": "RegionOne", "container": "c", "object": "o"},
            "target": {"region": "RegionTwo"}}
    job = await service.submit(body)
    async with service.http.get(f"{service.url}/v1/jobs") as response:
        assert response.status == 200
        ids = [j["id"] for j in (await response.json())["jobs"]]
    assert job["id"] in ids
    async with service.http.get(f"{service.url}/v1/jobs?state=bogus") as response:
        assert response.status == 400
        assert (await error_of(response))["field"] == "state"
