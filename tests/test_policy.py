"""The policy rules (pure): defaults per OpenStack persona, overrides, refused rule texts."""

from __future__ import annotations

import pytest

from xfer.errors import ConfigError
from xfer.web.policy import DEFAULT_RULES, Policy, parse_rule

MEMBER, READER, ADMIN = frozenset({"member"}), frozenset({"reader"}), frozenset({"admin"})


@pytest.mark.parametrize("rule, member, reader, admin", [
    ("image_copy:create", True, False, True),
    ("job:read", True, True, True),
    ("job:cancel", True, False, True),
    ("region:list", True, True, True),
    ("image:find", True, True, True),
    ("image:read", True, True, True),
    ("object_copy:create", False, False, True),
    ("object:find", False, False, True),
])
def test_defaults_follow_the_personas(rule: str, member: bool, reader: bool,
                                      admin: bool) -> None:
    policy = Policy.from_settings({})
    assert (policy.allows(rule, MEMBER), policy.allows(rule, READER),
            policy.allows(rule, ADMIN)) == (member, reader, admin)


def test_every_default_rule_is_tested_above() -> None:
    assert len(DEFAULT_RULES) == 8


def test_an_override_replaces_one_rule_and_role_names_ignore_case() -> None:
    policy = Policy.from_settings({"image_copy:create": "role:Copier"})
    assert policy.allows("image_copy:create", frozenset({"copier"}))
    assert not policy.allows("image_copy:create", MEMBER)
    assert policy.allows("job:read", READER)  # untouched
    assert Policy.from_settings({"job:read": "@"}).allows("job:read", frozenset())
    assert not Policy.from_settings({"job:read": "!"}).allows("job:read", ADMIN)


@pytest.mark.parametrize("text", ["member", "role:", "role:a and role:b", "rule:admin",
                                  "role:a or", "role:a b"])
def test_a_rule_it_cannot_read_stops_start_up(text: str) -> None:
    with pytest.raises(ConfigError, match="XFER_POLICY"):
        parse_rule("job:read", text)


def test_an_unknown_rule_name_stops_start_up() -> None:
    with pytest.raises(ConfigError, match="unknown rules"):
        Policy.from_settings({"job:delete": "role:admin"})
