from __future__ import annotations

from typing import Any

import pytest

from schola.scorers import contains, exact_match, extract_answer, llm_judge, numeric_match, regex, same_answer

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
    assert numeric_match("so [[Final Answer]]: $12$", 12) == 1.0
    assert numeric_match("no number here", 12) == 0.0
    assert numeric_match("it is 11 or 12", 12) == 1.0
    assert numeric_match("it is 11 or 12", 12, strict=True) == 0.0
    assert exact_match(" Paris ", "paris") == 1.0
    assert exact_match("Paris", "paris", ignore_case=False) == 0.0
    assert contains("The capital is Paris.", ["Lyon", "paris"]) == 1.0
    assert contains("The capital is Rome.", ["Lyon", "paris"]) == 0.0
    assert regex("Score: 7", pattern=r"Score: (\d+)", group=1) == "7"
    assert regex("nothing", pattern=r"Score: (\d+)") == 0.0


class FakeCtx:
    def __init__(self, reply: str) -> None:
        self.reply, self.prompts = reply, []

    async def act(self, role: str, prompt: str, **_: Any) -> str:
        self.prompts.append((role, prompt))
        return self.reply


async def test_llm_judge_scales_the_judges_score() -> None:
    ctx = FakeCtx("Clear and correct. Score: 8")
    assert await llm_judge(ctx, answer="42", rubric="correct number", question="6*7?") == pytest.approx(0.8)
    assert ctx.prompts[0][0] == "judge" and "correct number" in ctx.prompts[0][1]
    assert await llm_judge(FakeCtx("no score given"), answer="x", rubric="y") is None
