from __future__ import annotations

import builtins
import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from schola.scenarios.curriculum import episode, load, overlap, overlap_row, rank, report, top_quarter
from schola.scenarios.curriculum.data import CurriculumData, describe, load_split
from schola.scenarios.curriculum.designer import Design, distance_matrix, prototypes

from schola.errors import ConfigError
from schola.store import RunStore

torch = pytest.importorskip("torch")
from schola.scenarios.curriculum.learners import (  # noqa: E402  (after torch is known to be there)
    Hyper,
    IncrementalLearner,
    distillation_loss,
    ewc_penalty,
    fisher_importance,
    require_torch,
    run_order,
)

TOY = np.array([[0.0, 1.0, 3.0], [1.0, 0.0, 2.0], [3.0, 2.0, 0.0]])


# -- the designer, pinned on a 3-task toy matrix computed by hand -------------------------------
def test_designer_score_on_a_toy_matrix_computed_by_hand() -> None:
    d = Design.from_distance(TOY)
    # rows divided by their sums 4, 3, 5
    assert d.normalised == pytest.approx(np.array([[0, 1 / 4, 3 / 4], [1 / 3, 0, 2 / 3], [3 / 5, 2 / 5, 0]]))
    # variances 7/72, 2/27, 14/225 = 525, 400, 336 (/5400), normalised by their sum 1261/5400
    assert d.v == pytest.approx(np.array([525, 400, 336]) / 1261)
    # S = (1 - v(c1)) + d(c1, c2) + 1 - d(c1, c3) for n = 3
    assert d.score([2, 0, 1]) == pytest.approx((1 - 336 / 1261) + 3 / 5 + 1 - 2 / 5)
    assert d.score([0, 1, 2]) == pytest.approx((1 - 525 / 1261) + 1 / 4 + 1 - 3 / 4)
    assert d.score([1, 2, 0]) == pytest.approx((1 - 400 / 1261) + 2 / 3 + 1 - 1 / 3)
    # generated: the lowest-v task first, then by decreasing distance from it
    assert d.generate(2) == [[2, 0, 1], [1, 2, 0]]


def test_score_pairs_each_early_task_with_its_mirror_for_five_tasks() -> None:
    rng = np.random.default_rng(0)
    raw = rng.random((5, 5))
    d = Design.from_distance((raw + raw.T) * (1 - np.eye(5)))
    n, o, dn = 5, [3, 1, 4, 0, 2], d.normalised
    by_hand = (1 - d.v[3]) + dn[3, 1] + 1 - dn[3, 2] + dn[1, 4] + 1 - dn[1, 0]  # i = 1, 2 = ceil((5-1)/2)
    assert d.score(o) == pytest.approx(by_hand) and n == len(o)
    first = int(np.argmin(d.v))
    assert d.generate(1)[0] == [first, *sorted(set(range(5)) - {first}, key=lambda j: -dn[first, j])]


def test_task_prototypes_and_their_cosine_distances() -> None:
    x = np.array([[1, 0], [1, 0], [0, 1], [0, 2], [1, 1], [3, 3]], dtype=float)
    y = np.array([0, 1, 2, 3, 4, 5])
    protos = prototypes(x, y, [(0, 1), (2, 3), (4, 5)])
    assert protos == pytest.approx(np.array([[1, 0], [0, 1.5], [2, 2]]))
    d = distance_matrix(protos)
    assert d == pytest.approx(
        np.array([[0, 1, 1 - 1 / math.sqrt(2)], [1, 0, 1 - 1 / math.sqrt(2)], [1 - 1 / math.sqrt(2)] * 2 + [0]])
    )


def test_top_quarter_overlap_and_rank_computed_by_hand() -> None:
    s = {"a": 8.0, "b": 7.0, "c": 1.0, "d": 2.0, "e": 3.0, "f": 4.0, "g": 5.0, "h": 6.0}
    a = {"a": 0.9, "b": 0.1, "c": 0.8, "d": 0.2, "e": 0.3, "f": 0.4, "g": 0.5, "h": 0.6}
    assert top_quarter(s) == {"a", "b"}  # above the 75th percentile, 6.25
    assert top_quarter(a) == {"a", "c"}
    assert overlap(s, a) == 0.5
    assert (rank(a, "a"), rank(a, "c"), rank(a, "b")) == (1, 2, 8)
    row = overlap_row(s, a, seed=0, learner="naive", by="A")  # with a bootstrap CI over the orders
    assert (row.value, row.n, row.labels) == (0.5, 8, {"learner": "naive", "by": "A"})
    assert 0 <= row.ci_low < 0.5 < row.ci_high <= 1  # type: ignore[operator]


# -- data and orders ---------------------------------------------------------------------------
def test_digits_make_five_tasks_and_every_order_is_an_episode() -> None:
    eps = load(CurriculumData(orders=None), seed=0)
    assert len(eps) == 120 and len({tuple(e["order"]) for e in eps}) == 120
    assert (eps[0]["id"], eps[0]["order"], eps[-1]["id"]) == ("order-00000", [0, 1, 2, 3, 4], "order-00119")
    assert eps[0]["curriculum"] == "0,1 > 2,3 > 4,5 > 6,7 > 8,9"
    sample = load(CurriculumData(orders=10), seed=0)
    assert len(sample) == 10 and sample == load(CurriculumData(orders=10), seed=0) != load(
        CurriculumData(orders=10), seed=1
    )
    split = load_split(eps[0]["dataset"])
    assert split.tasks == ((0, 1), (2, 3), (4, 5), (6, 7), (8, 9)) and split.x_train.shape[1] == 64
    assert episode([2, 0, 1], split, {})["id"] == "order-00004"  # rank among the 3! orders of three tasks


def write_csv(path: Path, rows: list[list[Any]]) -> str:
    with path.open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    return str(path)


def test_a_users_csv_and_npz_become_tasks(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rows = [["f1", "f2", "species"]] + [[*rng.random(2).round(3), name] for name in ["cat", "dog", "emu", "fox"] * 5]
    eps = load(
        CurriculumData(path=write_csv(tmp_path / "d.csv", rows), label="species", classes_per_task=1, orders=None),
        seed=0,
    )
    assert len(eps) == 24 and eps[0]["curriculum"] == "cat > dog > emu > fox"
    np.savez(tmp_path / "d.npz", x=rng.random((40, 2, 2)), y=np.repeat(np.arange(4), 10))
    eps = load(CurriculumData(path=str(tmp_path / "d.npz"), label="y", orders=None), seed=0)
    assert [e["curriculum"] for e in eps] == ["0,1 > 2,3", "2,3 > 0,1"]
    assert load_split(eps[0]["dataset"]).x_train.shape == (28, 4)


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ([["f1", "label"], ["0.1", "a"], ["oops", "b"]], r"d\.csv:3: column 'f1' is not a number"),
        ([["f1", "cls"], ["0.1", "a"]], r"no column 'label'"),
        ([["f1", "label"]] + [["0.1", c] for c in "abcabcabc"], r"3 classes cannot make two or more tasks of 2"),
        ([["f1", "label"], ["0.1", "a"], ["0.2"]], r"d\.csv:3: 1 fields, the header has 2"),
    ],
)
def test_bad_csv_data_is_one_error_naming_file_line_and_field(
    tmp_path: Path, rows: list[list[str]], expected: str
) -> None:
    with pytest.raises(ConfigError, match=expected):
        load(CurriculumData(path=write_csv(tmp_path / "d.csv", rows)), seed=0)


def test_bad_npz_data_names_the_missing_array(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", features=np.zeros((4, 2)), y=np.arange(4))
    with pytest.raises(ConfigError, match=r"no array 'x' \(scenario.data.features\); the file has features, y") as e:
        load(CurriculumData(path=str(tmp_path / "d.npz"), label="y"), seed=0)
    assert e.value.key == "scenario.data.features"


# -- learners ----------------------------------------------------------------------------------
def test_ewc_penalty_is_the_fisher_weighted_squared_distance_and_grows_with_the_fisher_weight() -> None:
    model = torch.nn.Linear(1, 1)
    with torch.no_grad():
        model.weight.fill_(3.0)
        model.bias.fill_(0.5)
    anchor = {"weight": torch.tensor([[1.0]]), "bias": torch.tensor([0.5])}
    fisher = {"weight": torch.tensor([[2.0]]), "bias": torch.tensor([7.0])}
    assert float(ewc_penalty(model, [(fisher, anchor)]).detach()) == pytest.approx(
        2 * (3 - 1) ** 2
    )  # the bias sits on its anchor
    doubled = {k: 2 * v for k, v in fisher.items()}
    assert float(ewc_penalty(model, [(doubled, anchor)]).detach()) == pytest.approx(16.0)
    assert float(ewc_penalty(model, [(fisher, anchor), (doubled, anchor)]).detach()) == pytest.approx(
        24.0
    )  # one term per task


def test_distillation_loss_computed_by_hand_and_zero_for_unchanged_old_logits() -> None:
    out, previous = torch.tensor([[0.0, 0.0, 5.0]]), torch.tensor([[math.log(3), 0.0, -9.0]])
    # over the old units 0, 1: q = (3/4, 1/4), p = (1/2, 1/2): KL = 3/4 ln(3/2) + 1/4 ln(1/2)
    expected = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    assert float(distillation_loss(out, previous, [0, 1], 1.0)) == pytest.approx(expected)
    assert float(distillation_loss(previous, previous, [0, 1], 2.0)) == pytest.approx(0.0, abs=1e-7)


def digits_tasks() -> tuple[Any, list[tuple[Any, Any]], list[tuple[Any, Any]]]:
    split = load_split(describe(CurriculumData(), seed=0, source=None))

    def tensors(x: np.ndarray, y: np.ndarray, task: tuple[int, ...]) -> tuple[Any, Any]:
        mask = np.isin(y, list(task))
        return torch.as_tensor(x[mask], dtype=torch.float32), torch.as_tensor(y[mask])

    return (
        split,
        [tensors(split.x_train, split.y_train, t) for t in split.tasks],
        [tensors(split.x_test, split.y_test, t) for t in split.tasks],
    )


def test_fisher_is_the_mean_of_each_samples_squared_gradient_whatever_the_minibatch() -> None:
    """EWC's F: squaring minibatch gradients (as before) gave about F / batch size, so the same λ meant less with
    larger minibatches and the authors' 0.4 left EWC naive fine-tuning."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 3))
    x, y = torch.randn(6, 3), torch.tensor([0, 1, 2, 1, 0, 2])
    by_hand = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for i in range(len(x)):
        model.zero_grad()
        torch.nn.functional.cross_entropy(model(x[i : i + 1]), y[i : i + 1]).backward()
        for n, p in model.named_parameters():
            by_hand[n] += p.grad**2 / len(x)
    fisher = fisher_importance(model, x, y)
    assert fisher.keys() == by_hand.keys()
    assert all(torch.allclose(fisher[n], by_hand[n], atol=1e-7) for n in fisher)


def test_ewc_keeps_the_weights_near_the_first_tasks_more_as_lambda_grows() -> None:
    """At lr 1e-3, where a second task overwrites the first without a penalty."""
    _, train, test = digits_tasks()
    drift, kept = {}, {}
    for lam in (0.0, 1e4, 1e6):
        learner = IncrementalLearner(Hyper(strategy="ewc", ewc_lambda=lam, lr=1e-3), inputs=64, classes=10, seed=0)
        learner.learn(*train[0], task_seed=1)
        anchor = learner.importances[0][1]
        learner.learn(*train[1], task_seed=2)
        drift[lam] = sum(float(((p.detach() - anchor[n]) ** 2).sum()) for n, p in learner.model.named_parameters())
        kept[lam] = learner.accuracy(*test[0])
    assert drift[0.0] > drift[1e4] > drift[1e6]
    assert kept[0.0] < 0.1 and kept[1e6] > 0.9  # without the penalty the first task is forgotten


def test_lwf_keeps_the_old_tasks_logits_close_to_the_previous_model() -> None:
    _, train, test = digits_tasks()
    gap = {}
    for strategy in ("naive", "lwf"):
        learner = IncrementalLearner(
            Hyper(strategy=strategy, lwf_alpha=[0.0, 10.0], batch_size=8, lr=1e-3), inputs=64, classes=10, seed=0
        )
        learner.learn(*train[0], task_seed=1)
        before = learner.model(test[0][0]).detach()
        learner.learn(*train[1], task_seed=2)
        after = learner.model(test[0][0]).detach()
        gap[strategy] = float(distillation_loss(after, before, [0, 1], 1.0))
        assert (learner.teacher is not None) == (strategy == "lwf") and learner.seen == [0, 1, 2, 3]
    assert gap["lwf"] < 0.5 * gap["naive"]


def test_naive_fine_tuning_forgets_the_first_task_and_runs_are_deterministic() -> None:
    split, _, _ = digits_tasks()
    result = run_order(split, [0, 1, 2, 3, 4], Hyper(lr=1e-3), seed=0)
    assert result["first_task"][0] > 0.9 and result["delta"] > 0.8  # learnt, then forgotten (at the authors' lr)
    assert result["A"] == pytest.approx(result["average"][-1]) and len(result["average"]) == 5
    assert result["F"] == pytest.approx(2 * result["A"] / (result["delta"] * result["A"] + 1))
    assert run_order(split, [0, 1, 2, 3, 4], Hyper(lr=1e-3), seed=0) == result
    # the initial weights depend on the seed alone, not on the order
    a = IncrementalLearner(Hyper(), inputs=64, classes=10, seed=5).model[0].weight
    assert torch.equal(a, IncrementalLearner(Hyper(), inputs=64, classes=10, seed=5).model[0].weight)


def test_missing_torch_says_how_to_install_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real = builtins.__import__

    def no_torch(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "torch":
            raise ImportError("No module named 'torch'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torch)
    with pytest.raises(ConfigError, match=r"pip install 'schola\[curriculum\]'"):
        require_torch()


# -- the report stage --------------------------------------------------------------------------
class Reply:
    def __init__(self, data: dict[str, Any]) -> None:
        self.text, self.data = "", data


class FakeContext:
    """Orders of three tasks with S and A chosen by hand; the designer's curriculum [2, 0, 1] is not among them."""

    def __init__(self, tmp_path: Path) -> None:
        self.seed, self.output_dir, self.ran = 0, tmp_path, []
        self.store = RunStore(tmp_path)
        self.dataset = describe(CurriculumData(), seed=0, source=None)
        self.split = load_split(self.dataset)
        values = {(0, 1, 2): (1.0, 0.2), (0, 2, 1): (2.0, 0.4), (1, 0, 2): (3.0, 0.3), (1, 2, 0): (4.0, 0.9)}
        self.results = [self.record(list(o), s, a) for o, (s, a) in values.items()]

    def record(self, order: list[int], s: float, a: float) -> dict[str, Any]:
        e = episode(order, self.split, self.dataset)
        run = {"learner": "naive", "A": a, "delta": 0.5, "F": 2 * a / (0.5 * a + 1)}
        return {"episode": e["id"], "inputs": e, "outputs": {"design": {"S": s}, "runs": [run]}, "scores": {}}

    async def act(self, role: str, prompt: str) -> Reply:
        assert role == "designer" and json.loads(prompt)["generate"] is True
        return Reply({"curricula": [[2, 0, 1]], "v": [], "distance": [], "normalised": [], "tasks": []})

    async def run_episodes(self, inputs: list[dict[str, Any]], *, round: int | None = None) -> list[dict[str, Any]]:
        self.ran += [e["order"] for e in inputs]
        return [self.record(e["order"], 5.0, 0.5) for e in inputs]


async def test_report_evaluates_the_designers_curriculum_and_ranks_it(tmp_path: Path) -> None:
    ctx = FakeContext(tmp_path)
    rows = {(r.name, tuple(sorted(r.labels.items()))): r for r in await report(ctx)}
    assert ctx.ran == [[2, 0, 1]]
    # S 1..5 against A 0.2, 0.4, 0.3, 0.9, 0.5: Spearman = 1 - 6 * (0 + 1 + 1 + 1 + 1) / (5 * 24) = 0.8
    assert rows[("spearman_rho", (("x", "S"), ("y", "A[naive]")))].value == pytest.approx(0.8)
    # top quarters (above the 75th percentile): by S {S=5}, by A {A=0.9}
    assert rows[("top_quarter_overlap", (("by", "A"), ("learner", "naive")))].value == 0.0
    assert rows[("designer_rank", (("by", "A"), ("curriculum", 1), ("learner", "naive")))].value == 2
    assert rows[("designer_rank", (("by", "S"), ("curriculum", 1)))].value == 1
    assert rows[("designer_A", (("curriculum", 1), ("learner", "naive")))].value == 0.5
    table = list(csv.DictReader((tmp_path / "orders.csv").open()))
    assert len(table) == 5 and set(table[0]) == {"episode", "curriculum", "S", "A[naive]", "delta[naive]", "F[naive]"}
    assert json.loads((tmp_path / "designer.json").read_text())["generated"][0]["order"] == [2, 0, 1]
    assert (tmp_path / "a_vs_s.png").read_bytes()[:4] == b"\x89PNG"


# -- the whole scenario through the CLI --------------------------------------------------------
def test_the_default_run_shows_naive_ewc_and_lwf_forgetting_differently(cli: Any, tmp_path: Path) -> None:
    """The default config (30 sampled orders, the designer's 2, three learners) through the CLI: the roles' S and
    A land in the results, and the three strategies differ where the paper compares them. At the old defaults
    (lr 1e-3, λ 0.4) the first task ended at 0 in every order for all three, so Δ was the same for each."""
    code, out = cli("run", "scenario=curriculum", f"hydra.run.dir={tmp_path / 'r'}")
    assert code == 0, out
    run = tmp_path / "r"
    results = [json.loads(x) for x in (run / "results.jsonl").read_text().splitlines()]
    split = load_split(results[0]["inputs"]["dataset"])
    design = Design.from_features(split.x_train, split.y_train, split.tasks)
    for r in results:
        assert r["scores"]["S"] == pytest.approx(design.score(r["inputs"]["order"]))
        assert [run["learner"] for run in r["outputs"]["runs"]] == ["naive", "ewc", "lwf"]
        assert r["scores"]["A{learner=lwf}"] == r["outputs"]["runs"][2]["A"]
    generated = [episode(c, split, results[0]["inputs"]["dataset"])["id"] for c in design.generate(2)]
    assert set(generated) <= {r["episode"] for r in results}  # the designer's curricula were evaluated too
    assert len(results) == 30 + len(set(generated) - {r["episode"] for r in results if r.get("round", 0) == 0})
    metrics = json.loads((run / "metrics.json").read_text())["metrics"]
    names = {(m["name"], m["labels"].get("y")) for m in metrics}
    assert {("spearman_rho", f"A[{x}]") for x in ("naive", "ewc", "lwf")} <= names
    assert len(list(csv.DictReader((run / "orders.csv").open()))) == len(results)
    assert (run / "a_vs_s.png").exists()
    # forgetting: the first task survives in some orders, and each strategy keeps a different share of it
    delta = {x: [r["scores"][f"delta{{learner={x}}}"] for r in results] for x in ("naive", "ewc", "lwf")}
    last = {x: [run["first_task"][-1] for r in results for run in r["outputs"]["runs"] if run["learner"] == x]
            for x in delta}  # fmt: skip
    assert all(sum(a > 0.1 for a in last[x]) >= 5 for x in last), last
    mean = {x: float(np.mean(d)) for x, d in delta.items()}
    assert mean["naive"] - mean["ewc"] > 0.1 and mean["naive"] - mean["lwf"] > 0.1, mean
    assert abs(mean["ewc"] - mean["lwf"]) > 0.03, mean
    assert sum(e != n for e, n in zip(delta["ewc"], delta["naive"])) >= 0.9 * len(results)
    assert sum(w != n for w, n in zip(delta["lwf"], delta["naive"])) >= 0.9 * len(results)


def test_a_bad_dataset_stops_the_cli_before_anything_is_written(cli: Any, tmp_path: Path) -> None:
    bad = write_csv(tmp_path / "bad.csv", [["f1", "label"], ["0.1", "a"], ["n/a", "b"]])
    code, out = cli("run", "scenario=curriculum", f"scenario.data.path={bad}", f"hydra.run.dir={tmp_path / 'r'}")
    assert code == 2 and "bad.csv:3: column 'f1' is not a number" in out
    assert not (tmp_path / "r").exists()
