"""The REST API's contract: status codes, Location, and JSON errors that name the field."""

from __future__ import annotations

import json

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


BODY = {"source": {"region": "RegionOne", "container": "c", "object": "o"},
        "target": {"region": "RegionTwo"}}


async def test_idempotency_key_returns_the_same_job_or_409(service: Service):
    url = f"{service.url}/v1/jobs"
    headers = {"Idempotency-Key": "copy-cirros-to-two"}
    async with service.http.post(url, json=BODY, headers=headers) as first:
        assert first.status == 201
        job = await first.json()
    async with service.http.post(url, json=BODY, headers=headers) as again:
        assert again.status == 200
        assert (await again.json())["id"] == job["id"]
    other = {**BODY, "target": {"region": "RegionTwo", "object": "elsewhere"}}
    async with service.http.post(url, json=other, headers=headers) as conflict:
        assert conflict.status == 409
        error = await error_of(conflict)
        assert error["code"] == "idempotency_conflict" and error["field"] == "Idempotency-Key"
    async with service.http.post(url, json=BODY, headers={"Idempotency-Key": ""}) as bad:
        assert bad.status == 400
        assert (await error_of(bad))["field"] == "Idempotency-Key"


async def test_objects_lookup_needs_a_valid_checksum(service: Service):
    async with service.http.get(f"{service.url}/v1/objects") as response:
        assert response.status == 400
        assert (await error_of(response))["field"] == "checksum"
    async with service.http.get(f"{service.url}/v1/objects?checksum=xyz") as response:
        assert response.status == 400
    async with service.http.get(f"{service.url}/v1/objects?checksum={'0' * 32}") as response:
        assert response.status == 200
        assert (await response.json()) == {"objects": []}


STRING_FIELDS = ["source.region", "source.container", "source.object", "target.region",
                 "target.container", "target.object", "checksum", "segment_container"]
# JSON text as a hostile client writes it: escapes and numbers no json.dumps would produce
HOSTILE_STRINGS = ['"nul\\u0000"', '"\\ud800"', '"low \\udfff"', '"' + "x" * 2000 + '"',
                   "12" * 2500, "true", "[]", "{}", "1e999", "NaN"]
HOSTILE_INTEGERS = ["9" * 5000, "-" + "9" * 5000, "9223372036854775808", "-1", "0", "true",
                    "1.0", "1.5", "1e3", '"5"', "null", "[1]", "Infinity"]


def body_with(path: str, raw_value: str) -> bytes:
    """BODY as JSON text with the field at `path` set to raw JSON text."""
    *parents, name = path.split(".")
    body = {**BODY, "source": dict(BODY["source"]), "target": dict(BODY["target"])}
    place = body
    for parent in parents:
        place = place[parent]
    place[name] = "\0marker\0"
    return json.dumps(body).replace('"\\u0000marker\\u0000"', raw_value).encode()


async def test_every_field_refuses_its_hostile_values_over_http(service: Service):
    cases = [(field, raw) for field in STRING_FIELDS for raw in HOSTILE_STRINGS]
    cases += [("segment_size", raw) for raw in HOSTILE_INTEGERS if raw != "null"]
    for field, raw in cases:
        async with service.http.post(f"{service.url}/v1/jobs", data=body_with(field, raw),
                                     headers={"Content-Type": "application/json"}) as response:
            error = await error_of(response)
            assert response.status == 400, (field, raw[:20], error)
            # NaN and Infinity are not JSON at all; everything else is refused in its field
            expected = "body" if raw in ("NaN", "Infinity") else field
            assert error["field"] == expected, (field, raw[:20], error)


# --- several targets, and the per-job rate cap ----------------------------------------------

FAN_OUT = {"source": {"region": "RegionOne", "container": "c", "object": "o"},
           "targets": [{"region": "RegionTwo"}, {"region": "RegionOne", "container": "copies"}],
           "max_rate_mb": 40}


async def test_targets_and_the_rate_cap_are_named_when_bad(service: Service):
    source = FAN_OUT["source"]
    cases = [
        ({"source": source}, "target"),
        ({**FAN_OUT, "target": {"region": "RegionTwo"}}, "targets"),
        ({**FAN_OUT, "targets": []}, "targets"),
        ({**FAN_OUT, "targets": [{"region": "RegionTwo"}, {"region": "Mars"}]},
         "targets[1].region"),
        ({**FAN_OUT, "targets": [{"region": "RegionTwo"}, {"region": "RegionTwo", "object": "o"}]},
         "targets[1]"),
        ({**FAN_OUT, "targets": [{"region": "RegionTwo", "object": f"{i}"} for i in range(9)]},
         "targets"),
        ({**FAN_OUT, "max_rate_mb": 0}, "max_rate_mb"),
        ({**FAN_OUT, "max_rate_mb": "40"}, "max_rate_mb"),
        ({**FAN_OUT, "max_rate_mb": True}, "max_rate_mb"),
    ]
    for body, field in cases:
        async with service.http.post(f"{service.url}/v1/jobs", json=body) as response:
            error = await error_of(response)
            assert response.status == 400, (body, error)
            assert error["field"] == field, (body, error)
    huge = json.dumps(FAN_OUT).replace('"max_rate_mb": 40', '"max_rate_mb": 1e999').encode()
    async with service.http.post(f"{service.url}/v1/jobs", data=huge) as response:
        assert response.status == 400 and (await error_of(response))["field"] == "max_rate_mb"


async def test_a_fan_out_job_shows_each_target_and_its_cap(service: Service):
    job = await service.submit(FAN_OUT)
    assert job["max_rate_mb"] == 40
    assert job["target"] == {"region": "RegionTwo", "container": "c", "object": "o"}
    assert [(t["region"], t["container"], t["object"]) for t in job["targets"]] == [
        ("RegionTwo", "c", "o"), ("RegionOne", "copies", "o")]
    ended = await service.wait(job["id"])  # there is no source object c/o
    assert ended["state"] == "failed" and ended["error"]["code"] == "source_not_found"
    # the copy failed as a whole: so did every target, with the job's error
    assert [(t["state"], t["error"]) for t in ended["targets"]] == [
        ("failed", ended["error"])] * 2
    single = await service.submit(BODY)
    assert single["max_rate_mb"] is None
    assert [t["region"] for t in single["targets"]] == ["RegionTwo"]


async def test_idempotency_replays_a_fan_out_job(service: Service):
    url = f"{service.url}/v1/jobs"
    headers = {"Idempotency-Key": "fan-out-cirros"}
    async with service.http.post(url, json=FAN_OUT, headers=headers) as first:
        assert first.status == 201
        job = await first.json()
    async with service.http.post(url, json=FAN_OUT, headers=headers) as again:
        assert again.status == 200
        replayed = await again.json()
        assert replayed["id"] == job["id"] and len(replayed["targets"]) == 2
    for other in ({**FAN_OUT, "targets": FAN_OUT["targets"][::-1]},
                  {**FAN_OUT, "targets": FAN_OUT["targets"][:1]},
                  {**FAN_OUT, "max_rate_mb": 41}):
        async with service.http.post(url, json=other, headers=headers) as conflict:
            assert conflict.status == 409, other
    # one target asked as `target` or as `targets` is the same request
    headers = {"Idempotency-Key": "one-target-either-way"}
    async with service.http.post(url, json=BODY, headers=headers) as first:
        assert first.status == 201
        job = await first.json()
    as_list = {"source": BODY["source"], "targets": [BODY["target"]]}
    async with service.http.post(url, json=as_list, headers=headers) as again:
        assert again.status == 200 and (await again.json())["id"] == job["id"]


async def test_listing_by_region_matches_any_target(service: Service):
    source = {"region": "RegionTwo", "container": "c", "object": "o"}
    fan_out = await service.submit({"source": source, "targets": [
        {"region": "RegionTwo", "container": "d"}, {"region": "RegionOne"}]})
    elsewhere = await service.submit({"source": source,
                                      "target": {"region": "RegionTwo", "container": "e"}})
    async with service.http.get(f"{service.url}/v1/jobs?region=RegionOne") as response:
        ids = [j["id"] for j in (await response.json())["jobs"]]
    assert fan_out["id"] in ids and elsewhere["id"] not in ids
