"""Who may do what, oslo.policy style: named rules over the roles of the caller's token.

A rule is `role:<name>` alternatives joined by `or`; `@` allows any valid token and `!`
nobody. The defaults follow OpenStack's personas: a project's `reader` reads, its `member`
also copies and cancels, `admin` does everything, including the operator's raw object copies.
Jobs are always scoped to the caller's project (admin sees all): a rule decides what a caller
may do, never whose jobs it sees. XFER_POLICY replaces rules by name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from xfer.errors import ConfigError

DEFAULT_RULES: Mapping[str, str] = {
    "image_copy:create": "role:member or role:admin",
    "job:read": "role:reader or role:member or role:admin",
    "job:cancel": "role:member or role:admin",
    "region:list": "role:reader or role:member or role:admin",
    "image:find": "role:reader or role:member or role:admin",
    # the Glance-compatible read endpoint; the fronted Glance then decides what may be seen
    "image:read": "role:reader or role:member or role:admin",
    # raw Swift object copies with the operator's credentials, and the object index behind them
    "object_copy:create": "role:admin",
    "object:find": "role:admin",
}
# Sees every project's jobs, not only its own.
ALL_PROJECTS_ROLE = "admin"


@dataclass(frozen=True)
class Rule:
    any_token: bool
    roles: frozenset[str]

    def allows(self, roles: frozenset[str]) -> bool:
        return self.any_token or bool(self.roles & roles)


def parse_rule(name: str, text: str) -> Rule:
    text = text.strip()
    if text == "@":
        return Rule(True, frozenset())
    if text == "!":
        return Rule(False, frozenset())
    roles = set()
    for alternative in text.split(" or "):
        kind, _, role = alternative.strip().partition(":")
        if kind != "role" or not role or " " in role:
            raise ConfigError(f"XFER_POLICY rule {name!r}: {text!r} is not '@', '!' or "
                              "'role:<name> or role:<name> ...'")
        roles.add(role.lower())  # Keystone role names compare case-insensitively
    return Rule(False, frozenset(roles))


@dataclass(frozen=True)
class Policy:
    rules: Mapping[str, Rule]

    @classmethod
    def from_settings(cls, overrides: Mapping[str, str]) -> Policy:
        unknown = sorted(set(overrides) - set(DEFAULT_RULES))
        if unknown:
            raise ConfigError(f"XFER_POLICY names unknown rules {unknown}; known: "
                              f"{sorted(DEFAULT_RULES)}")
        texts = {**DEFAULT_RULES, **overrides}
        return cls({name: parse_rule(name, text) for name, text in texts.items()})

    def allows(self, rule: str, roles: frozenset[str]) -> bool:
        return self.rules[rule].allows(frozenset(role.lower() for role in roles))
