from __future__ import annotations

from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schola.roles import Reply
from schola.scorers import (
    contains,
    exact_match,
    extract_answer,
    llm_judge,
    normalize,
    numeric_match,
    regex,
    same_answer,
    to_number,
)

# (reply, strict answer, answer with fallback to the last number)
CASES: list[tuple[str, str | None, str | None]] = [
    ("[[Final Answer]]: $42$", "42", "42"),
    ("Let's think. 6*7=42.\n[[Final Answer]]: $42$\nDone.", "42", "42"),
    ("[[Final Answer]]: 17", "17", "17"),
    ("[[Final Answer]]: $-3$", "-3", "-3"),
    ("[[Final Answer]]: $1,234$", "1234", "1234"),
    ("[[Final Answer]]: $\\frac{3}{4}$", "3/4", "3/4"),
    ("[[Final Answer]]: $2.5$", "2.5", "2.5"),
    ("[[final answer]] : 8 apples", "8", "8"),
    ("so the result is \\boxed{12}", "12", "12"),
    ("\\boxed{\\frac{1}{2}}", "1/2", "1/2"),
    ("\\boxed{x^{2}+1}", "x^{2}+1", "x^{2}+1"),
    ("first \\boxed{3} then \\boxed{5}", "5", "5"),
    ("\\boxed{-7}", "-7", "-7"),
    ("The answer is 1,000,000.", "1000000", "1000000"),
    ("The answer is -12 pencils.", "-12", "-12"),
    ("So the answer is $0.75$.", "0.75", "0.75"),
    ("The answer is 3/8", "3/8", "3/8"),
    ("Final answer: 99", "99", "99"),
    ("Answer: 10", "10", "10"),
    ("the answer is \\boxed{16}.", "16", "16"),
    ("I am not sure.", None, None),
    ("", None, None),
    ("There are 4 boxes and 5 pens, 20 in all", None, "20"),
    ("He has 2,500 dollars left", None, "2500"),
    ("The answer is blue.", "blue", "blue"),
]


@pytest.mark.parametrize(("reply", "strict", "loose"), CASES)
def test_extract_answer_table(reply: str, strict: str | None, loose: str | None) -> None:
    assert extract_answer(reply) == strict
    assert extract_answer(reply, strict=False) == loose


def test_same_answer_compares_numbers_exactly() -> None:
    assert same_answer("0.5", "1/2")
    assert same_answer("1,000", "1000")
    assert not same_answer("0.33", "1/3")
    assert not same_answer(None, "1")
    assert same_answer("Blue", "blue")


def test_generic_scorers() -> None:
    assert numeric_match("so [[Final Answer]]: $12$", 12).value == 1.0
    assert numeric_match("no number here", 12).value == 0.0
    assert numeric_match("it is 11 or 12", 12).value == 1.0
    assert numeric_match("it is 11 or 12", 12, strict=True).value == 0.0
    assert exact_match(" Paris ", "paris").value == 1.0
    assert exact_match("Paris", "paris", ignore_case=False).value == 0.0
    assert contains("The capital is Paris.", ["Lyon", "paris"]).value == 1.0
    assert contains("The capital is Rome.", ["Lyon", "paris"]).value == 0.0
    assert regex("Score: 7", pattern=r"Score: (\d+)", group=1) == "7"
    assert regex("nothing", pattern=r"Score: (\d+)") == 0.0


class FakeCtx:
    def __init__(self, reply: str) -> None:
        self.reply, self.prompts = reply, []

    async def act(self, role: str, prompt: str, **_: Any) -> Reply:
        self.prompts.append((role, prompt))
        return Reply(text=self.reply)


async def test_llm_judge_scales_the_judges_score() -> None:
    ctx = FakeCtx("Clear and correct. Score: 8")
    score = await llm_judge(ctx, answer="42", rubric="correct number", question="6*7?")
    assert (
        score.value == pytest.approx(0.8) and score.explanation == "Clear and correct. Score: 8" and score.answer == "8"
    )
    assert ctx.prompts[0][0] == "judge" and "correct number" in ctx.prompts[0][1]
    assert (await llm_judge(FakeCtx("no score given"), answer="x", rubric="y")).value is None


def test_a_list_target_matches_any_of_its_elements() -> None:
    assert numeric_match("[[Final Answer]]: $2$", ["2"]).value == 1.0
    assert numeric_match("[[Final Answer]]: $0.5$", ["3", "1/2"]).value == 1.0
    assert numeric_match("[[Final Answer]]: $4$", ["2", "3"]).value == 0.0
    assert exact_match("Paris", ["Lyon", "paris"]).value == 1.0
    assert exact_match("['paris']", ["paris"]).value == 0.0  # not the list's string form
    assert exact_match("Rome", ["Lyon", "paris"]).value == 0.0


@pytest.mark.parametrize(
    ("text", "target", "whole", "part"),
    [
        ("I want it", "ant", 0.0, 1.0),
        ("An ant, here.", "ant", 1.0, 1.0),
        ("(ant)", "ant", 1.0, 1.0),
        ("It is in the U.S. now", "U.S.", 1.0, 1.0),
        ("Visit new  york\ncity", ["Boston", "New York"], 1.0, 0.0),
        ("C++ is a language", "c++", 1.0, 1.0),
        ("antelope", ["ant", "lope"], 0.0, 1.0),
    ],
)
def test_contains_word_mode_matches_whole_words_only(
    text: str, target: str | list[str], whole: float, part: float
) -> None:
    assert contains(text, target, word=True).value == whole
    assert contains(text, target).value == part


def test_an_empty_alias_matches_nothing() -> None:
    assert contains("anything", "").value == 0.0
    assert contains("anything", ["", "zzz"], word=True).value == 0.0


@settings(max_examples=400, deadline=None)
@given(st.text())
def test_parsers_never_crash_on_arbitrary_text(text: str) -> None:
    for strict in (True, False):
        found = extract_answer(text, strict=strict)
        assert found is None or isinstance(found, str)
    assert isinstance(normalize(text), str)
    assert to_number(text) is None or isinstance(to_number(text), Fraction)
    numeric_match(text, text)
    contains(text, text[:3], word=True)


FORMS = ["[[Final Answer]]: ${}$", "\\boxed{{{}}}", "The answer is {}.", "so... Final answer: {}"]


@st.composite
def written_numbers(draw: st.DrawFn) -> tuple[str, Fraction]:
    """A number as a reply may write it: integer (with or without thousands commas), decimal, fraction."""
    kind = draw(st.sampled_from(["int", "commas", "decimal", "fraction", "latex"]))
    n = draw(st.integers(-(10**12), 10**12))
    if kind == "int":
        return str(n), Fraction(n)
    if kind == "commas":
        return f"{n:,}", Fraction(n)
    if kind == "decimal":
        digits = draw(st.text("0123456789", min_size=1, max_size=6))
        sign = "-" if n < 0 else ""
        return f"{sign}{abs(n)}.{digits}", Fraction(f"{sign}{abs(n)}.{digits}")
    q = draw(st.integers(1, 10**6))
    return (f"{n}/{q}" if kind == "fraction" else f"\\frac{{{n}}}{{{q}}}"), Fraction(n, q)


@settings(max_examples=300, deadline=None)
@given(written_numbers(), st.sampled_from(FORMS))
def test_a_written_number_round_trips(number: tuple[str, Fraction], form: str) -> None:
    text, value = number
    assert to_number(extract_answer(form.format(text))) == value
    assert numeric_match(form.format(text), str(value)).value == 1.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The answer is 6, because 2 + 4. The answer is 11", "11"),  # the last statement wins
        ("The answer is 6, because it is.", "6"),  # the number the statement starts with
        ("The answer is:", None),  # a marker without an answer is none
        ("The answer is Paris. It is big.", "Paris"),  # its first sentence
        ("The answer is $12$.", "12"),
    ],
)
def test_a_stated_answer_is_the_last_statement_and_what_it_starts_with(text: str, expected: str | None) -> None:
    assert extract_answer(text) == expected
