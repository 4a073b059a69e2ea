"""Every input is checked for type, range and characters before anything runs, and a bad one
is named: each class of hostile value is tried in every field of its kind."""

import base64
import json
import uuid
from dataclasses import Field, fields
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict, MultiDict

from xfer.engine.types import ObjectRef
from xfer.errors import ConfigError, RequestError
from xfer.jobs.records import JobRequest
from xfer.jobs.states import JobState
from xfer.jobs.store import request_digest
from xfer.settings import Settings, from_environ
from xfer.web.validation import (
    INT64_MAX,
    MAX_OBJECT_NAME_BYTES,
    MAX_TARGETS,
    SEGMENT_NAME_OVERHEAD,
    JobsQuery,
    encode_cursor,
    idempotency_key,
    job_id,
    objects_query,
    parse_json_body,
    validate_job_request,
    validate_query,
)

REGIONS = {"RegionOne", "RegionTwo"}
GOOD = {"source": {"region": "RegionOne", "container": "images", "object": "cirros.img"},
        "target": {"region": "RegionTwo"}}
CONTAINER_FIELDS = ["source.container", "target.container", "segment_container"]
OBJECT_FIELDS = ["source.object", "target.object"]
REGION_FIELDS = ["source.region", "target.region"]
STRING_FIELDS = [*CONTAINER_FIELDS, *OBJECT_FIELDS, *REGION_FIELDS, "checksum"]


def with_field(path: str, value: object) -> dict:
    body = json.loads(json.dumps(GOOD))
    *parents, name = path.split(".")
    place = body
    for parent in parents:
        place = place[parent]
    place[name] = value
    return body


def field_of(body):
    with pytest.raises(RequestError) as error:
        validate_job_request(body, REGIONS)
    return error.value.field


def test_target_defaults_to_source_names():
    job = validate_job_request(GOOD, REGIONS)
    assert job == JobRequest(ObjectRef("RegionOne", "images", "cirros.img"),
                             ObjectRef("RegionTwo", "images", "cirros.img"))
    assert job.canonical()["target"] == {"region": "RegionTwo", "container": "images",
                                         "object": "cirros.img"}


def test_checksum_is_lower_cased_and_optional_fields_kept():
    job = validate_job_request({**GOOD, "checksum": "A" * 32, "segment_size": INT64_MAX,
                                "segment_container": "segs"}, REGIONS)
    assert (job.checksum, job.segment_size, job.segment_container) == (
        "a" * 32, INT64_MAX, "segs")


@pytest.mark.parametrize("body, field", [
    ([], "body"),
    ("text", "body"),
    ({"target": GOOD["target"]}, "source"),
    ({**GOOD, "colour": 1}, "colour"),
    ({**GOOD, "source": {**GOOD["source"], "region": "Nowhere"}}, "source.region"),
    ({**GOOD, "source": {"region": "RegionOne", "container": "images"}}, "source.object"),
    ({**GOOD, "source": "images/cirros.img"}, "source"),
    ({**GOOD, "target": {}}, "target.region"),
    ({**GOOD, "target": {"region": "RegionTwo", "extra": 1}}, "target.extra"),
    ({**GOOD, "target": {"region": "RegionOne"}}, "target"),
])
def test_bad_fields_are_named(body, field):
    assert field_of(body) == field


@pytest.mark.parametrize("field", STRING_FIELDS)
@pytest.mark.parametrize("value", ["nul\x00inside", "\ud800", "lone \udfff low", 7, True, [],
                                   {}, 1.5, ""])
def test_every_string_field_refuses_nul_surrogates_and_other_types(field, value):
    assert field_of(with_field(field, value)) == field


def long_name(field: str, name: str) -> dict:
    named = with_field(field, name)
    named["target"].setdefault("object", "short")  # not the source's long name
    return named


@pytest.mark.parametrize("field", CONTAINER_FIELDS)
def test_container_names_are_limited_in_characters_as_swift_counts_them(field):
    for name in ("c" * 256, "é" * 256, "€" * 256):
        validate_job_request(long_name(field, name), REGIONS)
    for name in ("c" * 257, "é" * 257, "c" * 100_000):
        assert field_of(long_name(field, name)) == field


@pytest.mark.parametrize("field, limit", [
    ("source.object", MAX_OBJECT_NAME_BYTES),
    ("target.object", MAX_OBJECT_NAME_BYTES - SEGMENT_NAME_OVERHEAD)])
def test_object_names_are_limited_in_bytes_of_utf8(field, limit):
    validate_job_request(long_name(field, "n" * limit), REGIONS)
    validate_job_request(long_name(field, "é" * (limit // 2)), REGIONS)
    assert field_of(long_name(field, "n" * (limit + 1))) == field
    assert field_of(long_name(field, "é" * (limit // 2 + 1))) == field  # two bytes each
    assert field_of(long_name(field, "n" * 100_000)) == field


@pytest.mark.parametrize("field", CONTAINER_FIELDS)
@pytest.mark.parametrize("value", [".", "..", "a/b", "/", "a/../b"])
def test_container_fields_refuse_what_no_swift_client_could_reach(field, value):
    assert field_of(with_field(field, value)) == field


@pytest.mark.parametrize("field", OBJECT_FIELDS)
@pytest.mark.parametrize("value", [".", "..", "/", "a/../../b", "dir/", "a//b", "%2e%2e",
                                   "./x", " ", "\n"])
def test_object_fields_take_every_name_swift_stores_exactly(field, value):
    job = validate_job_request(with_field(field, value), REGIONS)
    named = job.source if field == "source.object" else job.target
    assert named.object == value


@pytest.mark.parametrize("value", [0, -1, -(10**30), 10**30, 2**63, INT64_MAX + 1, True, False,
                                   1.0, 1.5, "5", [5], {"bytes": 5}])
def test_segment_size_is_an_integer_within_int64(value):
    assert field_of({**GOOD, "segment_size": value}) == "segment_size"


@pytest.mark.parametrize("checksum", ["xyz", "a" * 32 + "\n", "a" * 31, "a" * 33, " " + "a" * 32,
                                      "g" * 32, "a" * 32 + "\x00"])
def test_checksum_is_exactly_32_hex_digits(checksum):
    assert field_of({**GOOD, "checksum": checksum}) == "checksum"


# --- JSON bodies ---------------------------------------------------------------------------

@pytest.mark.parametrize("digits", [5000, 30, 21])
@pytest.mark.parametrize("sign", ["", "-"])
def test_huge_integers_are_named_where_they_are(digits, sign):
    body = json.dumps(GOOD)[:-1] + f', "segment_size": {sign}{"9" * digits}}}'
    assert field_of(parse_json_body(body.encode())) == "segment_size"
    named = json.dumps(GOOD).replace('"cirros.img"', "1" * digits)
    assert field_of(parse_json_body(named.encode())) == "source.object"


@pytest.mark.parametrize("raw", [b"", b"{nope", b"\xff\xfe{}", b'{"a": NaN}', b"[Infinity]",
                                 b"[" * 50_000 + b"]" * 50_000, b"\xef\xbb\xbf{}"])
def test_bodies_that_are_not_standard_json_name_the_body(raw):
    with pytest.raises(RequestError) as error:
        parse_json_body(raw)
    assert error.value.field == "body"


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(st.characters()),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8)
PATHS = st.sampled_from([*STRING_FIELDS, "segment_size", "source", "target", "targets",
                         "max_rate_mb", "extra"])


@given(PATHS, JSON_VALUES)
def test_any_value_in_any_field_is_accepted_or_named(path, value):
    try:
        validate_job_request(with_field(path, value), REGIONS)
    except RequestError as error:
        assert error.field.split(".")[0].split("[")[0] in {
            "source", "target", "targets", "checksum", "segment_size", "segment_container",
            "max_rate_mb", "extra"}


@given(st.lists(JSON_VALUES, max_size=10))
def test_any_targets_list_is_accepted_or_named(targets):
    body = {"source": GOOD["source"], "targets": targets}
    try:
        validate_job_request(body, REGIONS)
    except RequestError as error:
        assert error.field == "targets" or error.field.startswith("targets[")


@given(st.binary(max_size=200))
def test_any_bytes_parse_or_name_the_body(raw):
    try:
        parse_json_body(raw)
    except RequestError as error:
        assert error.field == "body"


ANY_TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=300)
LONG_TEXT = st.integers(250, 260).map(lambda n: "é" * n)


@given(ANY_TEXT | LONG_TEXT)
def test_container_names_are_taken_exactly_when_swift_would_take_them(name):
    try:
        name.encode()
        swift_takes_it = 0 < len(name) <= 256 and "/" not in name and "\x00" not in name
    except UnicodeEncodeError:
        swift_takes_it = False
    reachable = name not in (".", "..")
    try:
        validate_job_request(with_field("source.container", name), REGIONS)
        accepted = True
    except RequestError as error:
        assert error.field == "source.container"
        accepted = False
    assert accepted == (swift_takes_it and reachable)


# --- query parameters, headers, path ------------------------------------------------------

def jobs_query(**params: str) -> JobsQuery:
    return validate_query(JobsQuery, MultiDict(params), REGIONS)


def query_field(**params: str) -> str:
    with pytest.raises(RequestError) as error:
        jobs_query(**params)
    return error.value.field


def test_jobs_query_defaults_and_values():
    assert jobs_query() == JobsQuery(state=None, region=None, limit=100, cursor=None)
    at, after = datetime(2026, 1, 2, 3, 4, 5, 6789, tzinfo=UTC), uuid.uuid4()
    query = jobs_query(state="running", region="RegionTwo", limit="500",
                       cursor=encode_cursor(at, after))
    assert (query.state, query.region, query.limit, query.cursor) == (
        JobState.RUNNING, "RegionTwo", 500, (at, after))


@pytest.mark.parametrize("limit", ["0", "501", "-1", "1.0", " 1", "1_0", "+1", "1\n", "\u0661",
                                   "9" * 5000, "", "ten", "\x00", "\ud800"])
def test_limit_is_decimal_digits_within_the_page_bounds(limit):
    assert query_field(limit=limit) == "limit"


@pytest.mark.parametrize("name, value", [
    ("state", "bogus"), ("state", "queued\x00"), ("state", "\ud800"), ("state", "QUEUED"),
    ("region", "Mars"), ("region", "RegionOne\x00"), ("region", "\udc80"), ("region", ""),
    ("colour", "red"),
])
def test_every_list_parameter_is_checked(name, value):
    assert query_field(**{name: value}) == name


def test_a_name_that_is_not_unicode_is_refused_in_its_place():
    assert query_field(**{"\ud800": "x"}) == "query"
    assert field_of(with_field("target.\udfff", 1)) == "target"


@given(st.datetimes(timezones=st.just(UTC)), st.uuids())
def test_cursor_round_trips(created_at, job):
    token = encode_cursor(created_at, job)
    assert jobs_query(cursor=token).cursor == (created_at, job)
    assert token.isascii() and "=" not in token


def cursor_of(position: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode().rstrip("=")


@pytest.mark.parametrize("cursor", [
    "x", "!!!!", "a" * 201, "\ud800", cursor_of("text"), cursor_of([1, 2]), cursor_of({}),
    cursor_of(["2026-01-01T00:00:00", str(uuid.UUID(int=1))]),  # no time zone
    cursor_of(["0001-01-01T00:00:00+14:00", str(uuid.UUID(int=1))]),  # before year 1 in UTC
    cursor_of(["9999-12-31T23:59:59-14:00", str(uuid.UUID(int=1))]),  # after year 9999 in UTC
    cursor_of(["2026-01-01T00:00:00+00:00", "not-a-uuid"]),
    cursor_of(["2026-01-01T00:00:00+00:00", str(uuid.UUID(int=1)), "more"]),
    cursor_of([[[[[[[[[[[]]]]]]]]]]]),
])
def test_a_cursor_is_one_this_api_made(cursor):
    assert query_field(cursor=cursor) == "cursor"


@given(st.text(st.characters(codec=None, exclude_categories=()), max_size=250))
def test_any_cursor_text_is_a_position_or_named(cursor):
    try:
        at, _ = jobs_query(cursor=cursor).cursor
        assert at.astimezone(UTC).tzinfo is UTC
    except RequestError as error:
        assert error.field == "cursor"


def test_repeated_parameters_are_refused():
    with pytest.raises(RequestError) as error:
        validate_query(JobsQuery, MultiDict([("limit", "1"), ("limit", "2")]), REGIONS)
    assert error.value.field == "limit"


@pytest.mark.parametrize("params, field", [
    ({}, "checksum"), ({"checksum": "a" * 32 + "\n"}, "checksum"), ({"checksum": "xyz"}, "checksum"),
    ({"os_hash_value": "a" * 127}, "os_hash_value"), ({"os_hash_value": "\ud800"}, "os_hash_value"),
    ({"checksum": "a" * 32, "region": "Mars"}, "region"),
    ({"checksum": "a" * 32, "region": "RegionOne\x00"}, "region"),
    ({"checksum": "a" * 32, "image": "x"}, "image"),
])
def test_objects_query_is_checked(params, field):
    with pytest.raises(RequestError) as error:
        objects_query(MultiDict(params), REGIONS)
    assert error.value.field == field


def test_objects_query_takes_either_hash():
    assert objects_query(MultiDict({"os_hash_value": "A" * 128}), REGIONS).os_hash_value == "A" * 128
    found = objects_query(MultiDict({"checksum": "a" * 32, "region": "RegionOne"}), REGIONS)
    assert (found.checksum, found.region) == ("a" * 32, "RegionOne")


@pytest.mark.parametrize("key", ["", " ", "k" * 256, "ключ", "a b", "\ud800", "tab\t", "nul\x00"])
def test_idempotency_key_is_printable_ascii(key):
    with pytest.raises(RequestError) as error:
        idempotency_key(CIMultiDict({"Idempotency-Key": key}))
    assert error.value.field == "Idempotency-Key"


def test_idempotency_key_once_or_not_at_all():
    assert idempotency_key(CIMultiDict()) is None
    assert idempotency_key(CIMultiDict({"idempotency-key": "k" * 255})) == "k" * 255
    with pytest.raises(RequestError):
        idempotency_key(CIMultiDict([("Idempotency-Key", "a"), ("Idempotency-Key", "b")]))


@given(ANY_TEXT | st.just("0" * 9000))
def test_any_job_id_text_is_a_uuid_or_none(text):
    found = job_id(text)
    assert found is None or isinstance(found, uuid.UUID)


def test_job_ids_in_uuid_forms():
    job = uuid.uuid4()
    assert job_id(str(job)) == job_id(job.hex) == job_id(str(job).upper()) == job
    assert job_id("\u0663" * 32) is None  # Arabic-Indic digits, which int() would take
    assert job_id(str(job) + "\n") is None


# --- settings -------------------------------------------------------------------------------

def test_settings_reject_unknown_and_invalid_variables():
    with pytest.raises(ConfigError, match="XFER_SEGMENT_SIZ"):
        from_environ({"XFER_SEGMENT_SIZ": "1"})
    with pytest.raises(ConfigError, match="XFER_SEGMENTS_IN_FLIGHT"):
        from_environ({"XFER_SEGMENTS_IN_FLIGHT": "0"})
    with pytest.raises(ConfigError, match="XFER_READS_IN_FLIGHT"):
        from_environ({"XFER_READS_IN_FLIGHT": "0"})
    with pytest.raises(ConfigError, match="XFER_SEGMENTS_AHEAD"):
        from_environ({"XFER_SEGMENTS_AHEAD": "-1"})
    defaults = from_environ({})
    assert from_environ({"XFER_SEGMENTS_AHEAD": "0"}).copy_memory_bound == \
        defaults.segments_in_flight * defaults.segment_memory_bound
    with pytest.raises(ConfigError, match="XFER_REGIONS"):
        from_environ({"XFER_REGIONS": "[]"})
    settings = from_environ({"XFER_REGIONS": '{"R": {"auth_url": "u", "user": "a", "key": "s3"}}',
                             "XFER_SEGMENT_SIZE": "1024", "PATH": "/bin"})
    assert settings.segment_size == 1024 and "s3" not in repr(settings)


NUMERIC_SETTINGS = [f for f in fields(Settings) if f.type in ("int", "float")]


@pytest.mark.parametrize("setting", NUMERIC_SETTINGS, ids=lambda f: f.name)
@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "1e400", "", "abc", "1_0", "\u0663",
                                  "0x10", "1 2"])
def test_every_numeric_setting_refuses_what_is_no_finite_number(setting: Field[Any],
                                                                 text: str) -> None:
    variable = "XFER_" + setting.name.upper()
    with pytest.raises(ConfigError, match=variable):
        from_environ({variable: text})


@pytest.mark.parametrize("setting", [f for f in NUMERIC_SETTINGS if f.type == "int"],
                         ids=lambda f: f.name)
def test_every_integer_setting_refuses_a_fraction(setting: Field[Any]) -> None:
    variable = "XFER_" + setting.name.upper()
    with pytest.raises(ConfigError, match=variable):
        from_environ({variable: "1.5"})


def test_regions_variable_reads_back_as_the_same_regions():
    from xfer.settings import RegionConfig, regions_variable

    regions = [RegionConfig("RegionOne", "http://127.0.0.1:1/auth/v1.0", "a:b", "k1"),
               RegionConfig("RegionTwo", "http://127.0.0.1:2/auth/v1.0", "c:d", "k2")]
    settings = from_environ({"XFER_REGIONS": regions_variable(regions)})
    assert list(settings.regions.values()) == regions


# --- several targets, and the per-job rate cap ----------------------------------------------

SOURCE = GOOD["source"]


def fan_out(*targets: object, **extra: object) -> dict:
    return {"source": SOURCE, "targets": list(targets), **extra}


def test_targets_fill_each_target_as_target_does_and_keep_their_order():
    job = validate_job_request(fan_out({"region": "RegionTwo"},
                                       {"region": "RegionOne", "container": "copies"},
                                       {"region": "RegionTwo", "object": "other.img"}), REGIONS)
    assert job.targets == (ObjectRef("RegionTwo", "images", "cirros.img"),
                           ObjectRef("RegionOne", "copies", "cirros.img"),
                           ObjectRef("RegionTwo", "images", "other.img"))
    assert job.target == job.targets[0]
    one = validate_job_request(fan_out({"region": "RegionTwo"}), REGIONS)
    assert one == validate_job_request(GOOD, REGIONS) and one.more_targets == ()


TARGET_FIELD_CASES = [
    ({"region": "Mars"}, "targets[1].region"),
    ({}, "targets[1].region"),
    ({"region": "RegionTwo", "container": "a/b"}, "targets[1].container"),
    ({"region": "RegionTwo", "container": ".."}, "targets[1].container"),
    ({"region": "RegionTwo", "container": ""}, "targets[1].container"),
    ({"region": "RegionTwo", "object": "nul\x00"}, "targets[1].object"),
    ({"region": "RegionTwo", "object": "n" * (MAX_OBJECT_NAME_BYTES - SEGMENT_NAME_OVERHEAD + 1)},
     "targets[1].object"),
    ({"region": "RegionTwo", "object": 7}, "targets[1].object"),
    ({"region": "\ud800"}, "targets[1].region"),
    ({"region": "RegionTwo", "extra": 1}, "targets[1].extra"),
    ({"region": "RegionOne"}, "targets[1]"),  # the source itself
    ("RegionTwo", "targets[1]"),
    (None, "targets[1]"),
    ([], "targets[1]"),
]


@pytest.mark.parametrize("second, field", TARGET_FIELD_CASES)
def test_every_field_of_each_target_is_checked_and_named(second, field):
    assert field_of(fan_out({"region": "RegionTwo", "object": "first.img"}, second)) == field


@pytest.mark.parametrize("body, field", [
    ({"source": SOURCE}, "target"),
    ({"source": SOURCE, "target": {"region": "RegionTwo"}, "targets": [{"region": "RegionTwo"}]},
     "targets"),
    ({"source": SOURCE, "target": None}, "target"),
    ({"source": SOURCE, "targets": None}, "targets"),
    ({"source": SOURCE, "target": None, "targets": [{"region": "RegionTwo"}]}, "target"),
    (fan_out(), "targets"),
    ({"source": SOURCE, "targets": {"region": "RegionTwo"}}, "targets"),
    ({"source": SOURCE, "targets": "RegionTwo"}, "targets"),
])
def test_exactly_one_of_target_and_targets(body, field):
    assert field_of(body) == field


def test_at_most_max_targets():
    targets = [{"region": "RegionTwo", "object": f"copy-{i}"} for i in range(MAX_TARGETS + 1)]
    assert len(validate_job_request(fan_out(*targets[:MAX_TARGETS]), REGIONS).targets) == 8
    assert field_of(fan_out(*targets)) == "targets"


@pytest.mark.parametrize("targets, field", [
    ([{"region": "RegionTwo"}, {"region": "RegionTwo"}], "targets[1]"),
    # the same object once its defaults are filled in
    ([{"region": "RegionOne", "object": "x"}, {"region": "RegionTwo"},
      {"region": "RegionTwo", "container": "images", "object": "cirros.img"}], "targets[2]"),
    ([{"region": "RegionTwo", "object": "x"}, {"region": "RegionTwo", "container": None},
      {"region": "RegionTwo", "object": "x", "container": "images"}], "targets[2]"),
])
def test_duplicate_targets_are_named(targets, field):
    assert field_of(fan_out(*targets)) == field


def test_targets_sharing_one_segment_container_must_not_share_segment_names():
    same_names = [{"region": "RegionTwo", "container": "a"}, {"region": "RegionTwo",
                                                             "container": "b"}]
    validate_job_request(fan_out(*same_names), REGIONS)  # each in its own container
    assert field_of(fan_out(*same_names, segment_container="segs")) == "targets[1]"
    other_region = [{"region": "RegionTwo", "container": "a"}, {"region": "RegionOne",
                                                               "container": "b"}]
    validate_job_request(fan_out(*other_region, segment_container="segs"), REGIONS)


@pytest.mark.parametrize("value", [0, 0.0, -1, -0.5, -(10**30), float("nan"), float("inf"),
                                   float("-inf"), 1e9 + 1, 10**30, "5", "", True, False, [5],
                                   {"mb": 5}])
def test_max_rate_mb_is_a_positive_finite_number(value):
    assert field_of({**GOOD, "max_rate_mb": value}) == "max_rate_mb"


@pytest.mark.parametrize("raw", [b"1e400", b"-1e400", b"1" + b"0" * 5000, b"0", b"true",
                                 b'"40"'])
def test_max_rate_mb_refuses_what_json_text_can_say(raw):
    body = json.dumps(GOOD)[:-1].encode() + b', "max_rate_mb": ' + raw + b"}"
    assert field_of(parse_json_body(body)) == "max_rate_mb"


@pytest.mark.parametrize("value", [40, 0.5, 1e-3, 1e9, None])
def test_max_rate_mb_is_kept_as_a_float(value):
    job = validate_job_request({**GOOD, "max_rate_mb": value}, REGIONS)
    assert job.max_rate_mb == value and (value is None or isinstance(job.max_rate_mb, float))


def test_the_idempotency_digest_covers_targets_and_the_rate_cap():
    one = validate_job_request(GOOD, REGIONS)
    assert request_digest(validate_job_request(fan_out({"region": "RegionTwo"}), REGIONS)
                          ) == request_digest(one)  # the same request, asked either way
    two = validate_job_request(fan_out({"region": "RegionTwo"}, {"region": "RegionOne",
                                                                 "container": "c"}), REGIONS)
    swapped = validate_job_request(fan_out({"region": "RegionOne", "container": "c"},
                                           {"region": "RegionTwo"}), REGIONS)
    capped = validate_job_request({**GOOD, "max_rate_mb": 40}, REGIONS)
    digests = {request_digest(job) for job in (one, two, swapped, capped)}
    assert len(digests) == 4
    assert two.canonical()["targets"][1] == {"region": "RegionOne", "container": "c",
                                             "object": "cirros.img"}
    assert capped.canonical()["max_rate_mb"] == 40.0
