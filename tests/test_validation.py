"""Job requests: every malformed field is named."""

import pytest

from xfer.engine.types import ObjectRef
from xfer.errors import ConfigError, RequestError
from xfer.settings import from_environ
from xfer.web.validation import validate_job_request

REGIONS = {"RegionOne", "RegionTwo"}
GOOD = {"source": {"region": "RegionOne", "container": "images", "object": "cirros.img"},
        "target": {"region": "RegionTwo"}}


def field_of(body):
    with pytest.raises(RequestError) as error:
        validate_job_request(body, REGIONS)
    return error.value.field


def test_target_defaults_to_source_names():
    job = validate_job_request(GOOD, REGIONS)
    assert job.target == ObjectRef("RegionTwo", "images", "cirros.img")
    assert job.canonical()["target"] == {"region": "RegionTwo", "container": "images",
                                         "object": "cirros.img"}


@pytest.mark.parametrize("body, field", [
    ([], "body"),
    ({"target": GOOD["target"]}, "source"),
    ({**GOOD, "colour": 1}, "colour"),
    ({**GOOD, "source": {**GOOD["source"], "region": "Nowhere"}}, "source.region"),
    ({**GOOD, "source": {"region": "RegionOne", "container": "images"}}, "source.object"),
    ({**GOOD, "source": {**GOOD["source"], "container": "a/b"}}, "source.container"),
    ({**GOOD, "source": {**GOOD["source"], "container": ""}}, "source.container"),
    ({**GOOD, "source": {**GOOD["source"], "container": "c" * 257}}, "source.container"),
    ({**GOOD, "source": {**GOOD["source"], "object": "o" * 1025}}, "source.object"),
    ({**GOOD, "target": {}}, "target.region"),
    ({**GOOD, "target": {"region": "RegionTwo", "extra": 1}}, "target.extra"),
    ({**GOOD, "checksum": "xyz"}, "checksum"),
    ({**GOOD, "segment_size": 0}, "segment_size"),
    ({**GOOD, "segment_size": True}, "segment_size"),
    ({**GOOD, "target": {"region": "RegionOne"}}, "target"),
])
def test_bad_fields_are_named(body, field):
    assert field_of(body) == field


def test_settings_reject_unknown_and_invalid_variables():
    with pytest.raises(ConfigError, match="XFER_SEGMENT_SIZ"):
        from_environ({"XFER_SEGMENT_SIZ": "1"})
    with pytest.raises(ConfigError, match="XFER_SEGMENTS_IN_FLIGHT"):
        from_environ({"XFER_SEGMENTS_IN_FLIGHT": "0"})
    with pytest.raises(ConfigError, match="XFER_REGIONS"):
        from_environ({"XFER_REGIONS": "[]"})
    settings = from_environ({"XFER_REGIONS": '{"R": {"auth_url": "u", "user": "a", "key": "s3"}}',
                             "XFER_SEGMENT_SIZE": "1024", "PATH": "/bin"})
    assert settings.segment_size == 1024 and "s3" not in repr(settings)


def test_regions_variable_reads_back_as_the_same_regions():
    from xfer.settings import RegionConfig, regions_variable

    regions = [RegionConfig("RegionOne", "http://127.0.0.1:1/auth/v1.0", "a:b", "k1"),
               RegionConfig("RegionTwo", "http://127.0.0.1:2/auth/v1.0", "c:d", "k2")]
    settings = from_environ({"XFER_REGIONS": regions_variable(regions)})
    assert list(settings.regions.values()) == regions
