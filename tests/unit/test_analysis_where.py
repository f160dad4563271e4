"""``--where``: parsing the small expression language, and what reaches SQL."""

from __future__ import annotations

import pytest
from sqlalchemy.dialects import postgresql, sqlite

from jobdb.analysis.where import Condition, parse, split_commas, to_sql
from jobdb.errors import BadInput


def test_conditions_with_types_scopes_and_quoted_commas() -> None:
    assert parse(["lr=0.1,acc>0.9", "result.val.acc>=0.5", 'model!="a,b"', "x==null"]) == (
        Condition("lr", "=", 0.1),
        Condition("acc", ">", 0.9),
        Condition("val.acc", ">=", 0.5, "result"),
        Condition("model", "!=", "a,b"),
        Condition("x", "==", None),
    )
    assert parse(["params.flag=true"]) == (Condition("flag", "=", True, "params"),)
    assert split_commas("a=1, b='x,y'") == ["a=1", " b='x,y'"]


@pytest.mark.parametrize("text", ["lr", "=1", "lr=", "lr>>1", "lr=<1", "1x=2", "a b=1", "a='x"])
def test_malformed_conditions_are_bad_input(text: str) -> None:
    with pytest.raises(BadInput, match="--where"):
        parse([text])


def test_keys_and_values_are_bound_never_spliced() -> None:
    evil = '"x); DROP TABLE jobs; --"'
    [condition] = parse([f"name={evil}"])
    for dialect in (sqlite.dialect(), postgresql.dialect()):
        compiled = to_sql([condition], dialect.name).compile(dialect=dialect)  # type: ignore[union-attr]
        assert "DROP" not in str(compiled)
        assert any("DROP" in str(v) for v in compiled.params.values())


def test_not_equal_also_matches_a_missing_key_and_null_means_absent() -> None:
    sql = str(to_sql(parse(["lr!=1", "x=null"]), "sqlite"))
    assert "IS DISTINCT FROM" in sql or "IS NOT" in sql
    assert "IS NULL" in sql
    assert to_sql((), "sqlite") is None
