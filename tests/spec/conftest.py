"""Helpers for the spec tests: parse YAML text into a plan."""

from __future__ import annotations

import textwrap

from jobdb.spec.model import ExperimentSpec
from jobdb.spec.plan import Plan, expand
from jobdb.spec.yaml_spec import parse_yaml_spec


def spec_of(text: str) -> ExperimentSpec:
    return parse_yaml_spec(textwrap.dedent(text), "spec.yaml")


def plan_of(text: str) -> Plan:
    return expand(spec_of(text))
