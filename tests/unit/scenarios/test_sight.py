from __future__ import annotations

import csv
import json
import random
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from schola.scenarios.sight import CATEGORIES, answer_of, label
from schola.scenarios.sight.data import HERE, SightParams, generate, load_annotations
from schola.scenarios.sight.report import alpha, category_table, irr_correlation, kappa, usage_per_comment
from schola.scenarios.sight.roles import HumanAnnotator, HumanAnnotatorConfig, simulated_label
from sklearn.metrics import cohen_kappa_score

from schola.errors import ConfigError
from schola.roles import ActRequest

KNOWN = set(CATEGORIES)


# ---- parsing an annotator's reply ----


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("True.", "true"),
        ("false", "false"),
        ("Yes, it mentions the camera.", "true"),
        ("No.", "false"),
        ("The comment says thanks. Therefore, the label is true.", "true"),
        ("It is true that he thanks... Therefore, the label is false.\nLabel: false", "false"),
        ("Because of the board.\nLabel: TRUE", "true"),
        ("I cannot tell.", None),
        ("", None),
    ],
)
def test_answer_is_read_after_label_then_from_the_stated_label_then_the_first_word(
    reply: str, expected: str | None
) -> None:
    assert answer_of(reply) == expected


def test_label_turns_answers_into_category_labels_with_the_prompts_polarity() -> None:
    assert (label("true"), label("false")) == (1, 0)
    # non_english asks "Is the comment in English?": "true" means the label 0
    assert (label("true", true_means=0), label("false", true_means=0)) == (0, 1)
    # a human's label passes through; nothing to read is missing, not 0
    assert (label(1), label(0), label(None), label("no idea")) == (1, 0, None, None)


# ---- categories and the generated comments ----


def test_params_merge_edits_over_the_bundled_definitions_and_reject_unknown_categories() -> None:
    p = SightParams.model_validate({"definitions": {"setup": {"question": "Is it about the camera?"}}})
    assert p.definitions["setup"].question == "Is it about the camera?"
    assert p.definitions["setup"].criterion.startswith("the comment mentions the lecture")  # kept
    assert p.definitions["non_english"].true_means == 0 and p.definitions["general"].true_means == 1
    assert all(len(d.examples) == 3 for d in p.definitions.values())
    with pytest.raises(ValueError, match="unknown category bookmarks"):
        SightParams.model_validate({"categories": ["general", "bookmarks"]})


def test_bundled_comments_have_known_categories_and_enough_positives() -> None:
    bank = yaml.safe_load((HERE / "comments.yaml").read_text(encoding="utf-8"))
    ids = [c["id"] for c in bank["comments"]]
    assert len(ids) == len(set(ids))
    assert all(set(c["labels"]) <= KNOWN and c["video"] in bank["videos"] for c in bank["comments"])
    assert min(sum(cat in c["labels"] for c in bank["comments"]) for cat in CATEGORIES) >= 4


def test_generator_draws_positives_per_category_and_labels_every_category() -> None:
    bank = {c["id"]: c for c in yaml.safe_load((HERE / "comments.yaml").read_text(encoding="utf-8"))["comments"]}
    eps = generate(CATEGORIES, per_category=2, seed=0)
    assert eps == generate(CATEGORIES, per_category=2, seed=0) != generate(CATEGORIES, per_category=2, seed=1)
    comments = {e["comment_id"] for e in eps}
    assert len(comments) == 2 * len(CATEGORIES)  # each comment drawn once
    assert len(eps) == len(comments) * len(CATEGORIES) and len({e["id"] for e in eps}) == len(eps)
    for e in eps:
        assert e["gold"] == int(e["category"] in bank[e["comment_id"]]["labels"])
        assert e["playlist_name"].startswith("MIT") and e["video_name"]
    for cat in CATEGORIES:
        assert sum(e["gold"] for e in eps if e["category"] == cat) >= 2
    with pytest.raises(ConfigError, match="per_category=5 is too many"):
        generate(CATEGORIES, per_category=5, seed=0)


# ---- the authors' annotation file, as messy as it is ----

QUIRKY = (
    "datasplit,comment,video_name,annotator_H1_general,annotator_H1_gratitude,annotator_H1_bookmark,"
    "annotator_H2_general,annotator_H2_gratitude,annotator_H2_bookmark,playlist_name,,video_id,"
    "annotator_openaichat_v74_gratitude,comment_id,68,annotator_H1_non_english,annotator_H2_non_english\n"
    'train,"Thanks, professor!\n\nGreat lecture 😀, really.",18. Properties of Determinants,1.0,1.0,0.0,1.0,1.0,,'
    '"MIT 18.06 Linear Algebra, Spring 2005",,srxexLishgY,1.0,54.0,,0.0,0.0\n'
    'test,"muy bueno, gracias",Lec 3,,0.0,,1.0,0.0,0.0,"MIT 18.01, Fall 2006",x,abc,0.0,7.0,,1.0,1.0\n'
    "train,First!,Lec 1,0.0,0.0,0.0,0.0,,0.0,MIT 18.02,,v2,0.0,abc-9,,0.0,0.0,stray\n"
)
# the authors' full file repeats some comments, the same labels or blanks filled (stray column and id form may differ)
REPEAT = 'test,"muy bueno, gracias",Lec 3,1.0,0.0,,1.0,0.0,0.0,"MIT 18.01, Fall 2006",y,abc,0.0,7,,1.0,1.0\n'
CATS = ["general", "gratitude", "non_english"]


def write(tmp_path: Path, text: str, name: str = "sample.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_annotation_file_is_taken_as_it_is(tmp_path: Path) -> None:
    eps = load_annotations(write(tmp_path, QUIRKY), CATS, KNOWN, humans=["H1", "H2"], split=None)
    assert [e["id"] for e in eps[:3]] == ["54/general", "54/gratitude", "54/non_english"]
    first = eps[0]
    assert first["comment"] == "Thanks, professor!\n\nGreat lecture 😀, really."  # quoted newlines, commas, emoji
    assert first["playlist_name"] == "MIT 18.06 Linear Algebra, Spring 2005" and first["video_id"] == "srxexLishgY"
    by_id = {e["id"]: e for e in eps}
    assert by_id["54/gratitude"]["recorded"] == {"H1": 1, "H2": 1, "openaichat_v74": 1}
    assert by_id["7/general"]["recorded"] == {"H1": None, "H2": 1}  # empty is missing, not 0
    assert by_id["abc-9/gratitude"]["recorded"]["H2"] is None  # ids that are not numbers stay as they are
    assert by_id["7/non_english"]["recorded"] == {"H1": 1, "H2": 1}
    assert all(e["gold"] is None for e in eps)  # the humans are the file's
    test_only = load_annotations(write(tmp_path, QUIRKY), CATS, KNOWN, humans=["H1", "H2"], split="test")
    assert {e["comment_id"] for e in test_only} == {"7"}


def test_a_repeated_comment_is_one_comment_whose_labels_fill_the_blanks(tmp_path: Path) -> None:
    eps = load_annotations(write(tmp_path, QUIRKY + REPEAT), CATS, KNOWN, humans=["H1", "H2"], split=None)
    assert len(eps) == 3 * 3
    assert {e["id"]: e for e in eps}["7/general"]["recorded"] == {"H1": 1, "H2": 1}


def test_space_separated_file_without_humans_loads_for_model_annotation(tmp_path: Path) -> None:
    text = 'comment video_id video_name playlist_name comment_id annotator_openaichat_v0_setup\n"Jerison rocks!" Hg "Lec 29 | MIT" "MIT 18.01, Fall 2006" 7134.0 0.0\n'
    eps = load_annotations(write(tmp_path, text), ["setup"], KNOWN, humans=[], split=None)
    assert eps == [{
        "id": "7134/setup", "comment_id": "7134", "comment": "Jerison rocks!", "video_id": "Hg", "video_name": "Lec 29 | MIT",
        "playlist_name": "MIT 18.01, Fall 2006", "category": "setup", "gold": None, "recorded": {"openaichat_v0": 0},
    }]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("", "empty file"),
        ("   \n", "empty file"),
        (QUIRKY.replace("video_name,", "title,", 1), r"row 1 \(header\): missing column\(s\) video_name"),
        (QUIRKY.replace("annotator_H2_gratitude", "annotator_H3_gratitude"), "missing column.* annotator_H2_gratitude"),
        (
            QUIRKY.replace("annotator_H1_bookmark", "annotator_H1_bookmarks"),
            "column 'annotator_H1_bookmarks': unknown category",
        ),
        (QUIRKY.replace("54.0,,0.0", "54.0,,2.0"), r"row 2 \(line 4\), column 'annotator_H1_non_english': label '2.0'"),
        (QUIRKY.replace("abc-9", "7.0"), r"row 4 \(line 6\), column 'comment': comment 7 differs from row 3"),
        (
            QUIRKY + REPEAT.replace("Lec 3,1.0,0.0", "Lec 3,1.0,1.0"),
            r"row 5 \(line 7\), column 'annotator_H1_gratitude': comment 7 is labelled 0 in row 3",
        ),
        (QUIRKY.split("\n")[0] + "\n", "no rows"),
    ],
)
def test_bad_annotation_file_is_one_error_naming_file_row_and_column(tmp_path: Path, text: str, where: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=where) as e:
        load_annotations(path, CATS, KNOWN, humans=["H1", "H2"], split=None)
    assert e.value.file == str(path)


def test_split_needs_a_datasplit_column(tmp_path: Path) -> None:
    path = write(tmp_path, QUIRKY.replace("datasplit,", "split,", 1))
    with pytest.raises(ConfigError, match=r"missing column.*datasplit"):
        load_annotations(path, CATS, KNOWN, humans=["H1", "H2"], split="test")


# ---- the human annotators ----


async def test_human_gives_the_files_label_where_recorded_else_simulates_from_gold() -> None:
    cfg = HumanAnnotatorConfig(role="sight_human", recorded="H1", reliability=1.0)
    human = HumanAnnotator("H1", cfg, None)
    assert human.config.backend is None
    recorded = await human.act(
        ActRequest(
            prompt="-", state={"category": "setup", "recorded": {"H1": 0, "H2": 1}, "gold": 1, "episode_id": "e"}
        )
    )
    assert recorded.data == 0
    missing = await human.act(
        ActRequest(prompt="-", state={"category": "setup", "recorded": {"H1": None}, "gold": None, "episode_id": "e"})
    )
    assert missing.data is None and label(missing.data) is None
    simulated = await human.act(
        ActRequest(prompt="-", state={"category": "setup", "recorded": {}, "gold": 1, "episode_id": "e"})
    )
    assert simulated.data == 1  # reliability 1 reads every comment right
    guesser = HumanAnnotator(
        "H2", HumanAnnotatorConfig(role="sight_human", reliability={"default": 0.0}, guess_rate=0.0), None
    )
    assert [
        (await guesser.act(ActRequest(prompt="-", state={"category": c, "gold": 1, "episode_id": c}))).data
        for c in CATEGORIES
    ] == [0] * 9


def test_two_simulated_humans_agree_with_kappa_near_the_product_of_their_reliabilities() -> None:
    rng = random.Random(0)
    gold = [int(rng.random() < 0.3) for _ in range(20000)]
    a = [simulated_label(g, reliability=0.9, guess_rate=0.3, rng=rng) for g in gold]
    b = [simulated_label(g, reliability=0.8, guess_rate=0.3, rng=rng) for g in gold]
    assert cohen_kappa_score(a, b) == pytest.approx(0.72, abs=0.02)
    assert cohen_kappa_score(a, gold) == pytest.approx(0.9, abs=0.02)


# ---- the statistics, on hand-computed cases ----


def test_kappa_and_alpha_match_hand_computed_values() -> None:
    # p_o = 3/4; p_e = .5 * .25 + .5 * .75 = .5; kappa = (.75 - .5) / (1 - .5)
    assert kappa([1, 1, 0, 0], [1, 0, 0, 0]) == pytest.approx(0.5)
    assert kappa([1, 1, 0, 0, None, 1], [1, 0, 0, 0, 1, None]) == pytest.approx(0.5)  # unpaired items left out
    assert kappa([0, 0, 0], [0, 0, 0]) is None and kappa([1], [1]) is None
    # coincidences o00=4, o01=o10=1, o11=2; D_o = 2/8, D_e = 2*5*3/(8*7); alpha = 1 - D_o/D_e = 16/30
    assert alpha([[1, 1, 0, 0], [1, 0, 0, 0]]) == pytest.approx(16 / 30)
    assert alpha([[1, 1, 0, 0], [1, 0, 0, 0], [None, None, None, None]]) == pytest.approx(16 / 30)
    assert alpha([[0, 0], [0, 0]]) is None


def result(category: str, i: int, **labels: int | None) -> dict[str, Any]:
    scores = {f"label{{annotator={k}}}": v for k, v in labels.items() if v is not None}
    return {"episode": f"c{i}/{category}", "inputs": {"category": category, "comment_id": f"c{i}"}, "scores": scores}


def test_category_table_gives_irr_and_each_models_mean_kappa_with_the_humans() -> None:
    h1, h2, m = [1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 0, 0]
    results = [result("setup", i, H1=h1[i], H2=h2[i], M=m[i]) for i in range(4)]
    results += [result("na", i, H1=v, H2=v, M=1 - v) for i, v in enumerate([1, 0, 1, 0])]
    results.append(result("na", 9, H1=1, H2=None, M=1))  # H2 left it blank: not in n
    table = {r["category"]: r for r in category_table(results, humans=["H1", "H2"], models=["M"])}
    assert table["setup"]["n"] == 4 and table["setup"]["irr"] == pytest.approx(0.5)
    assert table["setup"]["kappa_H1_M"] == pytest.approx(1.0) and table["setup"]["kappa_H2_M"] == pytest.approx(0.5)
    assert table["setup"]["kappa_M"] == pytest.approx(0.75)
    assert table["na"]["n"] == 4 and table["na"]["irr"] == pytest.approx(1.0)
    # with H1 (5 items): p_o = 1/5, p_e = .6*.6 + .4*.4 = .52, kappa = -2/3; with H2 (4 items): -1
    assert table["na"]["kappa_M"] == pytest.approx(-5 / 6)


def test_irr_and_model_kappa_are_correlated_across_categories() -> None:
    table = [{"irr": x, "kappa_M": y} for x, y in [(0.5, 0.2), (0.7, 0.4), (0.9, 0.9)]]
    rows = {r.name: r for r in irr_correlation(table, "M", seed=0)}
    # dx = (-.2, 0, .2), dy = (-.3, -.1, .4): r = .14 / sqrt(.08 * .26)
    assert rows["irr_vs_model.pearson_r"].value == pytest.approx(0.14 / (0.08 * 0.26) ** 0.5)
    assert rows["irr_vs_model.spearman_rho"].value == pytest.approx(1.0)
    assert rows["irr_vs_model.pearson_r"].labels == {"model": "M"} and rows["irr_vs_model.pearson_r"].n == 3


def test_usage_per_comment_counts_each_models_tokens_over_comments(tmp_path: Path) -> None:
    results = [result(c, i) for i in range(2) for c in ("setup", "na")]
    lines = [
        {"episode": "c0/setup", "agent": "M", "prompt_tokens": 10, "completion_tokens": 2, "cost_usd": 0.001},
        {"episode": "c0/na", "agent": "M", "prompt_tokens": 10, "completion_tokens": 2, "cost_usd": 0.001},
        {"episode": "c1/na", "agent": "M", "prompt_tokens": 20, "completion_tokens": 4, "cost_usd": 0.002},
        {"episode": "c1/na", "agent": "H1", "prompt_tokens": 0, "completion_tokens": 0},
    ]
    (tmp_path / "transcript.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    rows = {r.name: r for r in usage_per_comment(tmp_path, results, ["M"])}
    assert rows["tokens_per_comment"].value == pytest.approx(48 / 2) and rows["tokens_per_comment"].n == 2
    assert rows["cost_usd_per_comment"].value == pytest.approx(0.004 / 2)


# ---- the scenario on the scripted backend ----

FAST = ["backend=scripted", "scenario=sight", "scenario.data.per_category=2",
        "scenario.params.categories=[gratitude,confusion,non_english]"]  # fmt: skip


def rows_of(run: Path) -> list[dict[str, str]]:
    return list(csv.DictReader((run / "labels.csv").open(encoding="utf-8")))


def model_prompts(run: Path) -> list[dict[str, Any]]:
    lines = [json.loads(x) for x in (run / "transcript.jsonl").read_text(encoding="utf-8").splitlines()]
    return [x for x in lines if x["agent"] == "M"]


def test_zero_shot_run_reports_agreement_per_category(cli: Any, tmp_path: Path) -> None:
    run = tmp_path / "r"
    code, out = cli("run", *FAST, f"hydra.run.dir={run}")
    assert code == 0, out
    prompts = model_prompts(run)
    assert len(prompts) == 6 * 3  # 6 comments x 3 categories, one model
    assert all("If the statement below is true" in p["prompt"] and "Label:" not in p["prompt"] for p in prompts)
    labels = rows_of(run)
    assert len(labels) == 18
    # the scripted model reads "thank" in the comment: exactly the gold labels of gratitude
    assert all(r["M"] == r["gold"] for r in labels if r["category"] == "gratitude")
    metrics = json.loads((run / "metrics.json").read_text())["metrics"]
    irr = {m["labels"]["category"]: m for m in metrics if m["name"] == "irr.cohen_kappa" and "category" in m["labels"]}
    assert set(irr) == {"gratitude", "confusion", "non_english"}
    for category, row in irr.items():
        pairs = [(int(r["H1"]), int(r["H2"])) for r in labels if r["category"] == category]
        expected = cohen_kappa_score([p[0] for p in pairs], [p[1] for p in pairs])
        assert row["value"] == pytest.approx(expected) and row["n"] == 6
    table = list(csv.DictReader((run / "categories.csv").open(encoding="utf-8")))
    assert [r["category"] for r in table] == ["gratitude", "confusion", "non_english"] and all(
        r["n"] == "6" for r in table
    )
    named = {m["name"] for m in metrics}
    assert {"krippendorff_alpha", "human_model_kappa", "irr_vs_model.pearson_r", "tokens_per_comment"} <= named
    assert (run / "agreement.png").stat().st_size > 1000


@pytest.mark.parametrize("variant", ["few_shot", "few_shot_reasoning"])
def test_few_shot_variants_show_three_examples_and_parse_their_replies(cli: Any, tmp_path: Path, variant: str) -> None:
    run = tmp_path / "r"
    code, out = cli(
        "run", *FAST, f"scenario.variant={variant}", "scenario.stages=[{fn: sight.report}]", f"hydra.run.dir={run}"
    )
    assert code == 0, out
    prompts = model_prompts(run)
    assert len(prompts) == 18
    for p in prompts:
        assert len(re.findall(r"^Label: (?:true|false)$", p["prompt"], re.M)) == 3
        assert p["prompt"].endswith("Explanation:" if variant == "few_shot_reasoning" else "Label:")
        assert ("Therefore, the label is" in p["prompt"]) == (variant == "few_shot_reasoning")
    labels = {(r["comment_id"], r["category"]): r["M"] for r in rows_of(run)}
    for p in prompts:
        comment_id, category = p["episode"].split("/")
        said = answer_of(p["text"])
        expected = int((said == "true") == (category != "non_english"))
        assert labels[(comment_id, category)] == str(expected)


def test_the_files_human_labels_replace_the_simulated_humans(cli: Any, tmp_path: Path) -> None:
    write(tmp_path, QUIRKY)
    run = tmp_path / "r"
    code, out = cli("run", "backend=scripted", "scenario=sight", "scenario.data.path=sample.csv",
                    f"scenario.params.categories=[{','.join(CATS)}]", "scenario.stages=[{fn: sight.report}]",
                    f"hydra.run.dir={run}")  # fmt: skip
    assert code == 0, out
    labels = {(r["comment_id"], r["category"]): (r["H1"], r["H2"]) for r in rows_of(run)}
    assert labels[("54", "general")] == ("1", "1") and labels[("7", "general")] == ("", "1")
    assert labels[("abc-9", "gratitude")] == ("0", "")


def test_per_category_with_a_file_is_an_error_not_ignored(cli: Any, tmp_path: Path) -> None:
    write(tmp_path, QUIRKY)
    code, out = cli("check", "backend=scripted", "scenario=sight", "scenario.data.path=sample.csv",
                    "scenario.data.per_category=1", f"scenario.params.categories=[{','.join(CATS)}]")  # fmt: skip
    assert code == 2 and "scenario.data.per_category" in out and "scenario.data.path" in out


def test_bad_data_stops_before_any_run_with_the_file_row_and_column(cli: Any, tmp_path: Path) -> None:
    write(tmp_path, QUIRKY.replace("54.0,,0.0", "54.0,,yes please"))
    code, out = cli("run", "backend=scripted", "scenario=sight", "scenario.data.path=sample.csv",
                    f"scenario.params.categories=[{','.join(CATS)}]", f"hydra.run.dir={tmp_path / 'r'}")  # fmt: skip
    assert code == 2
    assert "sample.csv" in out and "row 2" in out and "annotator_H1_non_english" in out
    assert not (tmp_path / "r" / "results.jsonl").exists()


def test_several_models_each_get_their_kappa_with_the_humans(cli: Any, tmp_path: Path) -> None:
    run = tmp_path / "r"
    models = "[{role: annotator, name: small, backend: default}, {role: annotator, name: other, backend: default}]"
    code, out = cli("run", *FAST, f"scenario.roles.models={models}", f"hydra.run.dir={run}")
    assert code == 0, out
    table = list(csv.DictReader((run / "categories.csv").open(encoding="utf-8")))
    assert {"kappa_small", "kappa_other", "kappa_H1_small", "alpha"} <= set(table[0])
    gratitude = next(r for r in table if r["category"] == "gratitude")
    assert gratitude["kappa_small"] == gratitude["kappa_other"]  # one scripted backend: the same replies
    metrics = json.loads((run / "metrics.json").read_text())["metrics"]
    assert {m["labels"]["model"] for m in metrics if m["name"] == "irr_vs_model.pearson_r"} == {"small", "other"}


def test_human_model_kappa_and_alpha_have_bootstrap_cis_over_the_categorys_comments() -> None:
    """SIGHT's headline had no CI: the mean kappa's is the bootstrap over comments (the same resamples as
    scikit-learn's kappa recomputed on each), alpha's the same bootstrap of `krippendorff.alpha`."""
    import warnings

    import numpy as np
    from schola.scenarios.sight.report import alpha_ci, mean_kappa_ci

    from schola.metrics import bootstrap_interval

    rng = np.random.default_rng(0)
    gold = rng.integers(0, 2, 30)
    h1, h2, m = ([int(g) if rng.random() < p else int(rng.integers(0, 2)) for g in gold] for p in (0.9, 0.8, 0.6))
    m[3] = None  # a reply with no label: left out of its pairs
    results = [result("setup", i, H1=h1[i], H2=h2[i], M=m[i]) for i in range(30)]
    row = category_table(results, humans=["H1", "H2"], models=["M"], seed=0)[0]
    low, high = row["kappa_M_ci_low"], row["kappa_M_ci_high"]
    assert low < row["kappa_M"] < high

    def by_sklearn(a: Any, b: Any, c: Any) -> float:
        keep = c >= 0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(np.mean([cohen_kappa_score(h[keep], c[keep], labels=[0, 1]) for h in (a, b)]))

    codes = tuple(np.asarray([-1 if v is None else v for v in col]) for col in (h1, h2, m))
    assert (low, high) == pytest.approx(bootstrap_interval(codes, by_sklearn, seed=0))
    assert mean_kappa_ci([h1, h2], m, seed=0) == (low, high)
    assert row["alpha_ci_low"] < row["alpha"] < row["alpha_ci_high"]
    assert alpha_ci([h1, h2, m], seed=0) == (row["alpha_ci_low"], row["alpha_ci_high"])
    assert category_table(results, humans=["H1", "H2"], models=["M"], seed=1)[0]["alpha_ci_low"] != row["alpha_ci_low"]
