"""Rendering a command template into argv: values never reach a shell."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobdb.errors import BadInput
from jobdb.runtime.command import format_value, render_argv


def test_words_are_split_before_values_are_filled() -> None:
    params = {"name": "x; rm -rf ~", "lr": 0.1}
    argv = render_argv("python train.py --name {name} --lr={lr}", params)
    assert argv == ["python", "train.py", "--name", "x; rm -rf ~", "--lr=0.1"]


def test_quoted_words_and_literal_braces() -> None:
    argv = render_argv("echo 'a {x} b' {{literal}}", {"x": "$(touch pwned)"})
    assert argv == ["echo", "a $(touch pwned) b", "{literal}"]


def test_dotted_names_are_whole_parameter_names() -> None:
    assert render_argv("run --lr {optim.lr}", {"optim.lr": 0.01}) == ["run", "--lr", "0.01"]


def test_format_spec_is_applied() -> None:
    assert render_argv("run {lr:.1e}", {"lr": 0.001}) == ["run", "1.0e-03"]


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (True, "true"),
        (None, "null"),
        (3, "3"),
        (1.0, "1.0"),
        (1e-05, "1e-05"),
        ([64, 32], "[64,32]"),
        ({"b": 1, "a": "x"}, '{"a":"x","b":1}'),
        ("two words", "two words"),
    ],
)
def test_values_are_written_as_in_the_spec(value: object, text: str) -> None:
    assert format_value(value) == text


def test_unknown_placeholder_names_the_known_ones() -> None:
    with pytest.raises(BadInput, match=r"\{lrr\} is not a parameter.*known: lr"):
        render_argv("run {lrr}", {"lr": 1})


def test_unbalanced_quotes_are_bad_input() -> None:
    with pytest.raises(BadInput, match="No closing quotation"):
        render_argv("echo 'oops", {})


@given(st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=40))
def test_any_string_value_is_exactly_one_argument(value: str) -> None:
    assert render_argv("prog --v {v} end", {"v": value}) == ["prog", "--v", value, "end"]
