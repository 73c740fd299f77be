from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import TypeAdapter

from schola.errors import ConfigError
from schola.graph import Graph, Node

NODES = TypeAdapter(list[Node])


def build(steps: list[dict[str, Any]]) -> Graph:
    return Graph(NODES.validate_python(steps))


def check(steps: list[dict[str, Any]], *, known: set[str] = {"question"}) -> None:
    build(steps).check(known=set(known), roles={"teacher", "student"}, scorers={"exact_match"})


class Ctx:
    """Replies 'role:prompt'; records call order and the peak number of concurrent calls."""

    def __init__(self, delay: float = 0.0) -> None:
        self.calls: list[tuple[str, str, int]] = []
        self.recorded: dict[str, list[Any]] = {}
        self.delay, self.inflight, self.peak = delay, 0, 0

    async def act(self, role: str, prompt: str, *, node: str, sample: int, sampling: dict[str, Any], **_: Any) -> str:
        self.inflight += 1
        self.peak = max(self.peak, self.inflight)
        await asyncio.sleep(self.delay)
        self.inflight -= 1
        self.calls.append((role, prompt, sample))
        return f"{role}:{prompt}"

    async def score(self, scorer: str, inputs: dict[str, Any], params: dict[str, Any], *, node: str) -> Any:
        return float(str(inputs["a"]) == str(inputs["b"]))

    def record(self, name: str, score: Any, labels: Any = None) -> None:
        self.recorded.setdefault(name, []).append(score.value)


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ([{"id": "a", "kind": "agent", "role": "teacher", "prompt": "x", "output": "o"}] * 2, "duplicate step id"),
        (
            [{"id": "a", "kind": "agent", "role": "teacher", "prompt": "x", "output": "o", "after": ["zz"]}],
            "unknown step 'zz'",
        ),
        ([{"id": "a", "kind": "agent", "role": "dean", "prompt": "x", "output": "o"}], "unknown role 'dean'"),
        ([{"id": "a", "kind": "score", "scorer": "bleu", "output": "o"}], "unknown scorer 'bleu'"),
        ([{"id": "a", "kind": "agent", "role": "teacher", "prompt": "{{ answer }}", "output": "o"}], "reads answer"),
        ([{"id": "a", "kind": "agent", "role": "teacher", "prompt": "{{ question", "output": "o"}], "invalid template"),
        ([{"id": "a", "kind": "dance"}], "expected tags: 'agent'"),
        (
            [
                {"id": "a", "kind": "agent", "role": "teacher", "prompt": "x", "output": "o"},
                {"id": "r", "kind": "route", "routes": [{"when": "true", "to": "a"}]},
            ],
            "without max_iters",
        ),
        (
            [
                {"id": "a", "kind": "agent", "role": "teacher", "prompt": "x", "output": "o", "after": ["b"]},
                {"id": "b", "kind": "agent", "role": "teacher", "prompt": "x", "output": "p", "after": ["a"]},
            ],
            "cycle",
        ),
        (
            [
                {
                    "id": "m",
                    "kind": "map",
                    "over": {"x": "[1]"},
                    "steps": [{"id": "s", "kind": "agent", "role": "teacher", "prompt": "{{ x }}", "output": "o"}],
                    "collect": {"os": "nope"},
                }
            ],
            "collects 'nope'",
        ),
    ],
)
def test_static_check_rejects_bad_graphs_before_any_call(steps: list[dict[str, Any]], message: str) -> None:
    with pytest.raises((ConfigError, ValueError), match=message):
        check(steps)


def test_static_check_reads_outputs_of_earlier_steps_and_map_items() -> None:
    check(
        [
            {"id": "a", "kind": "agent", "role": "teacher", "prompt": "{{ question }}", "output": "expl"},
            {"id": "m", "kind": "map", "over": {"s": "['x', 'y']"}, "collect": {"outs": "o"},
             "steps": [{"id": "b", "kind": "agent", "role": "student", "prompt": "{{ expl }} {{ s }}", "output": "o"}]},
            {"id": "j", "kind": "join", "inputs": ["outs"], "output": "all"},
        ]
    )  # fmt: skip


async def test_independent_branches_run_concurrently_and_join_waits_for_both() -> None:
    g = build(
        [
            {"id": "a", "kind": "agent", "role": "student", "prompt": "A", "output": "x", "after": []},
            {"id": "b", "kind": "agent", "role": "student", "prompt": "B", "output": "y", "after": []},
            {"id": "j", "kind": "join", "inputs": {"x": "x", "y": "y"}, "reduce": "concat", "output": "both", "after": ["a", "b"]},
        ]
    )  # fmt: skip
    ctx, state = Ctx(delay=0.02), {}
    await g.run(state, ctx)
    assert ctx.peak == 2
    assert state["both"] == "student:A\n\nstudent:B"


async def test_map_runs_the_product_concurrently_and_collects_in_order() -> None:
    g = build(
        [
            {"id": "m", "kind": "map", "over": {"s": "['s1', 's2']", "q": "[1, 2, 3]"}, "collect": {"answers": "ans", "hits": "hit"},
             "steps": [
                 {"id": "ask", "kind": "agent", "role": "{{ s }}", "prompt": "{{ q }}", "output": "ans"},
                 {"id": "hit", "kind": "score", "scorer": "eq", "inputs": {"a": "q", "b": "2"}, "output": "hit"},
             ]},
            {"id": "total", "kind": "join", "inputs": ["hits"], "reduce": "sum", "output": "total"},
        ]
    )  # fmt: skip
    ctx, state = Ctx(delay=0.01), {}
    await g.run(state, ctx)
    assert state["answers"] == ["s1:1", "s1:2", "s1:3", "s2:1", "s2:2", "s2:3"]
    assert state["total"] == 2.0
    assert ctx.peak == 6
    assert sorted(ctx.recorded["hit"]) == [0, 0, 0, 0, 1, 1]


async def test_route_takes_the_first_true_guard_and_skips_the_other_branch() -> None:
    g = build(
        [
            {"id": "a", "kind": "agent", "role": "t", "prompt": "{{ question }}", "output": "x"},
            {"id": "r", "kind": "route", "routes": [{"when": "'hard' in question", "to": "hard"}], "default": "easy"},
            {"id": "hard", "kind": "agent", "role": "t", "prompt": "hard", "output": "h", "after": []},
            {"id": "easy", "kind": "agent", "role": "t", "prompt": "easy", "output": "e", "after": []},
        ]
    )  # fmt: skip
    ctx, state = Ctx(), {"question": "a hard one"}
    await g.run(state, ctx)
    assert "h" in state and "e" not in state
    ctx, state = Ctx(), {"question": "simple"}
    await g.run(state, ctx)
    assert "e" in state and "h" not in state


async def test_loop_repeats_until_the_guard_fails_or_max_iters() -> None:
    steps = [
        {"id": "draft", "kind": "agent", "role": "t", "prompt": "draft", "output": "d"},
        {"id": "critique", "kind": "agent", "role": "s", "prompt": "{{ d }}", "output": "c"},
        {"id": "again", "kind": "route", "routes": [{"when": "true", "to": "draft"}], "max_iters": 2},
        {"id": "end", "kind": "agent", "role": "t", "prompt": "end", "output": "e", "after": ["again"]},
    ]
    ctx, state = Ctx(), {}
    await build(steps).run(state, ctx)
    assert "e" not in state  # a step after a route runs only when the route chooses it
    steps[2]["default"] = "end"
    steps[3]["after"] = []
    ctx, state = Ctx(), {}
    await build(steps).run(state, ctx)
    drafts = [c for c in ctx.calls if c[1] == "draft"]
    assert len(drafts) == 3  # the first pass and two loops
    assert [c[2] for c in drafts] == [0, 1, 2]  # each pass is a new sample, so a cache never repeats it
    assert state["e"] == "t:end"
