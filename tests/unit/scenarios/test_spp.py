from __future__ import annotations

import itertools
import json
import logging
import random
from pathlib import Path
from typing import Any

import pytest
import yaml
from schola.agents.persona import Persona, PersonaConfig
from schola.scenarios.spp import parsed, score
from schola.scenarios.spp.data import HERE, SppData, generate, load, read_file
from schola.scenarios.spp.logic_grid import count_solutions, generate_puzzle, holds
from schola.scenarios.spp.scoring import codenames_score, logic_correct, participants, trivia_score, unwrap

import schola
from schola.backends.scripted import ScriptedClient
from schola.errors import ConfigError
from schola.roles import ActRequest
from schola.store import read_jsonl

VARIANTS = ["standard", "cot", "self_refine", "spp", "spp_profile", "spp_fixed_persona", "spp_multi"]
LEXICON = yaml.safe_load((HERE / "codenames_lexicon.yaml").read_text())


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


# -- generated data ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("houses", "characteristics"), [(2, 2), (3, 2), (3, 3), (4, 2)])
def test_logic_grid_puzzles_have_one_solution_and_the_target_is_its_answer(houses: int, characteristics: int) -> None:
    for i in range(3):
        record, clues = generate_puzzle(random.Random(i), houses=houses, characteristics=characteristics)
        # brute force over every assignment, independent of the solver's backtracking
        perms = list(itertools.permutations(range(houses)))
        grids = [list(map(list, g)) for g in itertools.product(perms, repeat=characteristics)]
        solved = [g for g in grids if all(holds(c, g) for c in clues)]
        assert len(solved) == 1 and count_solutions(clues, houses, characteristics) == 1
        assert record["multiple_choice_targets"] == [str(k) for k in range(1, houses + 1)]
        assert record["multiple_choice_scores"] == [
            int(t == record["targets"][0]) for t in record["multiple_choice_targets"]
        ]
        assert record["inputs"].startswith(f"Q: There are {houses} houses") and record["inputs"].endswith("\nA:")
        assert record["inputs"].count("  choice: ") == houses
        assert len(clues) == len([line for line in record["inputs"].splitlines() if line[:1].isdigit()])


def test_clue_semantics_and_a_puzzle_with_two_solutions() -> None:
    grid = [[0, 1, 2], [2, 0, 1]]  # characteristic 0: values in houses 1, 2, 3; characteristic 1: 3, 1, 2
    assert holds(("directly_left", (0, 0), (1, 2)), grid)  # house 1 directly left of house 2
    assert not holds(("directly_left", (1, 2), (0, 0)), grid)
    assert holds(("somewhere_right", (1, 0), (0, 0)), grid) and holds(("one_between", (0, 0), (1, 0)), grid)
    assert holds(("next_to", (0, 2), (1, 2)), grid) and holds(("not_at", (0, 0), 1), grid)
    assert count_solutions([("at", (0, 0), 0)], 2, 1) == 1
    assert count_solutions([("next_to", (0, 0), (0, 1))], 2, 1) == 2  # either order


def test_generated_data_is_seeded_and_in_the_authors_shapes() -> None:
    for task in ("trivia_creative_writing", "codenames", "logic_grid_puzzle"):
        data = SppData(task=task, items=4)
        assert generate(data, 0) == generate(data, 0) != generate(data, 1)
    for n in (5, 10):
        for ep in generate(SppData(questions=n, items=4), 0):
            assert len(ep["questions"]) == len(ep["answers"]) == len(set(ep["question_ids"])) == n
            assert ep["phases"][0]["statement"].startswith(f"Write a short and coherent story about {ep['topic']}")
            assert f"the following {n} questions: {ep['questions'][0]}" in ep["phases"][0]["statement"]
    for ep in generate(SppData(task="codenames", items=6, words=12, targets=3), 0):
        assert len(ep["word_list"]) == 12 and set(ep["target_words"]) <= set(ep["word_list"])
        home = [c for c, words in LEXICON.items() if ep["target_words"][0] in words]
        assert all(w in LEXICON[home[0]] for w in ep["target_words"])  # the targets share a category ...
        assert not [w for w in ep["word_list"] if w in LEXICON[home[0]] and w not in ep["target_words"]]  # alone
        assert [p["name"] for p in ep["phases"]] == ["spymaster", "guesser"]


# -- the authors' formats ---------------------------------------------------------------------------------------
TRIVIA = {"questions": ["Who was the man behind The Chipmunks?", "Capital of Japan?"],
          "answers": [["David Seville", "david seville"], ["Tokyo"]], "question_ids": ["tc_2", "tc_33"],
          "topic": "Harry Potter"}  # fmt: skip
BOARD = {"idx": 7, "word_list": ["locust", "fever", "street", "kiss", "popcorn", "director"],
         "target_words": ["director", "kiss"]}  # fmt: skip
PUZZLE = {"idx": 0, "inputs": "Q: There are 2 houses ...\nWhat is the number of the house where the flutist lives?\n"
          "  choice: 2\n  choice: 1\nA:", "targets": ["2"], "multiple_choice_targets": ["1", "2"],
          "multiple_choice_scores": [0, 1]}  # fmt: skip


def test_sizes_with_a_file_are_honoured_or_said(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """data.items=1 with a path ran every item of the file; run.episodes beyond the file ran what was there
    without a word."""
    from schola.spec import RunSpec, plan_of

    path = write_jsonl(tmp_path / "t.jsonl", [TRIVIA, {**TRIVIA, "idx": 1}, {**TRIVIA, "idx": 2}])
    base = ["scenario=spp", "backend=scripted", f"scenario.data.path={path}"]
    plan, _ = plan_of(RunSpec.from_args([*base, "scenario.data.items=1"]))
    assert [e["id"] for e in plan.selected] == ["0"]
    with caplog.at_level(logging.WARNING, logger="schola"):
        plan, _ = plan_of(RunSpec.from_args([*base, "scenario.data.items=5"]))
        assert len(plan.selected) == 3 and "scenario.data.items=5, but there are only 3 items" in caplog.text
        plan, _ = plan_of(RunSpec.from_args([*base, "run.episodes=100"]))
        assert len(plan.selected) == 3 and "run.episodes=100, but there are only 3 episodes" in caplog.text
    assert len(load(SppData(), seed=0)) == 3  # without a file: 3 generated


def test_loaders_read_the_authors_records(tmp_path: Path) -> None:
    [trivia] = read_file(write_jsonl(tmp_path / "t.jsonl", [TRIVIA]), "trivia_creative_writing")
    assert trivia["id"] == "0" and trivia["gold"] == TRIVIA["answers"]
    assert trivia["phases"][0]["statement"] == (
        "Write a short and coherent story about Harry Potter that incorporates the answers to the following 2 "
        "questions: Who was the man behind The Chipmunks? Capital of Japan?"
    )
    [board] = read_file(write_jsonl(tmp_path / "c.jsonl", ["", BOARD]), "codenames")  # blank lines are skipped
    assert board["id"] == "7" and board["gold"] == ["director", "kiss"]
    assert '"director, kiss"' in board["phases"][0]["statement"]
    assert 'the word "{hint_word}" from the following list: locust, fever,' in board["phases"][1]["statement"]
    [puzzle] = read_file(write_jsonl(tmp_path / "l.jsonl", [PUZZLE]), "logic_grid_puzzle")
    assert puzzle["gold"] == "2" and puzzle["phases"][0]["statement"] == PUZZLE["inputs"].removesuffix("\nA:")


@pytest.mark.parametrize(
    ("task", "rows", "message"),
    [
        (
            "trivia_creative_writing",
            [TRIVIA, {**TRIVIA, "answers": [["x"]]}],
            r"t\.jsonl:2: field 'answers': 1 alias lists for 2 questions",
        ),
        ("trivia_creative_writing", [{k: v for k, v in TRIVIA.items() if k != "topic"}], r":1: field 'topic'"),
        ("codenames", [BOARD, {**BOARD, "idx": 8, "target_words": "kiss"}], r":2: field 'target_words'"),
        (
            "codenames",
            [{**BOARD, "target_words": ["moon"]}],
            r":1: field 'target_words': \['moon'\] are not in word_list",
        ),
        ("codenames", [BOARD, BOARD], r":2: field 'idx': duplicate idx 7"),
        (
            "logic_grid_puzzle",
            [{**PUZZLE, "multiple_choice_scores": [1]}],
            r":1: field 'multiple_choice_scores': needs one score per",
        ),
        ("logic_grid_puzzle", ["{not json"], r":1: invalid JSON"),
        ("logic_grid_puzzle", [], r"t\.jsonl: no records"),
        ("logic_grid_puzzle", [[1, 2]], r":1: expected a JSON object"),
    ],
)
def test_bad_records_are_one_error_naming_file_line_and_field(
    tmp_path: Path, task: str, rows: list[Any], message: str
) -> None:
    path = write_jsonl(tmp_path / "t.jsonl", rows)
    with pytest.raises(ConfigError, match=message) as caught:
        read_file(path, task)
    assert caught.value.file == str(path) and caught.value.key == "scenario.data.path"


def test_a_bad_data_file_stops_the_cli_before_any_run(cli: Any, tmp_path: Path) -> None:
    write_jsonl(tmp_path / "bad.jsonl", [BOARD, {"idx": 1, "word_list": ["a", "b"]}])
    code, out = cli("run", "scenario=spp", "backend=scripted", "scenario.data.task=codenames",
                    "scenario.data.path=bad.jsonl", f"hydra.run.dir={tmp_path / 'r'}")  # fmt: skip
    assert code == 2 and "bad.jsonl:2" in out and "target_words" in out
    assert not (tmp_path / "r" / "results.jsonl").exists()


# -- extraction and metrics, by hand ----------------------------------------------------------------------------
TRIVIA_TASK, CODENAMES, LOGIC = "trivia_creative_writing", "codenames", "logic_grid_puzzle"


@pytest.mark.parametrize(
    ("reply", "task", "variant", "text", "found"),
    [
        ("Once upon a time, Tokyo.", TRIVIA_TASK, "standard", "Once upon a time, Tokyo.", True),
        ("Plan:\nTokyo.\n\nStory:\nA tale.", TRIVIA_TASK, "cot", "A tale.", True),
        ("Plan: no story", TRIVIA_TASK, "cot", "", False),
        ("Participants: ...\nFinal answer: A tale.", TRIVIA_TASK, "spp", "A tale.", True),
        ("A tale without the prefix.", TRIVIA_TASK, "spp_profile", "", False),
        ("Steps: ...\nAnswer: Cinema.", CODENAMES, "cot", "Cinema.", True),
        ("cinema", CODENAMES, "standard", "cinema", True),  # the authors keep it whole
        ("final answer: kiss, street", CODENAMES, "spp_multi", "kiss, street", True),
        ("Answer: 2 Answer: 3", LOGIC, "standard", "2", True),  # the authors' split(marker)[1]
        ("The house is 2.", LOGIC, "self_refine", "", False),
        ("Final answer: The house number is 3.", LOGIC, "spp_fixed_persona", "The house number is 3.", True),
    ],
)
def test_final_answer_extraction(reply: str, task: str, variant: str, text: str, found: bool) -> None:
    assert unwrap(reply, task=task, variant=variant) == {"text": text, "parsed": found}


def test_metrics_by_hand() -> None:
    answers = [["Canberra"], ["Mars"], ["William Shakespeare", "Shakespeare"], ["Tokyo"], ["Ottawa"]]
    assert trivia_score("In CANBERRA, a shakespeare fan looked at mars.", answers) == 3 / 5
    assert trivia_score("Nothing here.", answers) == 0.0
    assert codenames_score("Director, kiss., Popcorn, moon", ["director", "kiss", "popcorn", "street"]) == 3 / 4
    assert codenames_score("kiss, kiss", ["kiss", "street"]) == 1 / 2
    assert logic_correct("The answer is 2.", "2") == 1.0
    assert logic_correct("She lives in the second house.", "2") == 1.0
    assert logic_correct("House 2 of 3.", "2") == 0.0  # another number appears
    assert logic_correct("House 12.", "2") == 0.0  # "1" is in "12": the authors' substring check
    assert logic_correct("The tenth house.", "10") == 1.0 and logic_correct("House 10.", "10") == 0.0
    assert logic_correct("I do not know.", "3") == 0.0


def test_an_unparsed_answer_scores_zero_and_counts_against_the_parse_rate() -> None:
    good, bad = {"text": "Canberra", "parsed": True}, {"text": "Canberra", "parsed": False}
    assert score("trivia_creative_writing", [good], [["Canberra"], ["Mars"]]).value == 0.5
    assert score("trivia_creative_writing", [bad], [["Canberra"]]).value == 0.0
    failed = score("codenames", [bad, {"text": "kiss", "parsed": True}], ["kiss"])  # the hint failed
    assert failed.value == 0.0 and failed.explanation == "answer 1 of 2 was not found in its reply"
    assert (parsed([good, good]), parsed([good, bad]), parsed([])) == (1.0, 0.0, 0.0)


def test_participants_are_read_from_the_reply_in_speaking_order() -> None:
    reply = (
        "Participants: AI Assistant (you); Geographer; Poet; Critic\n\nProfiles:\n"
        "    - AI Assistant (you): A helper.\n    - Geographer: Knows capitals.\n    - poet: Writes verse."
    )
    cast = participants(reply, max_personas=2)
    assert cast == {"parsed": True, "participants": [
        {"name": "Geographer", "profile": "Knows capitals."}, {"name": "Poet", "profile": "Writes verse."},
        {"name": "AI Assistant (you)", "profile": "A helper."}]}  # fmt: skip
    fallback = participants("I will just solve it.")
    assert not fallback["parsed"] and [p["name"] for p in fallback["participants"]] == ["Expert", "AI Assistant (you)"]


async def test_a_persona_speaks_with_the_system_prompt_of_the_participant_in_the_state() -> None:
    client = ScriptedClient({"kind": "scripted", "default": "{{ system }}"})
    role = Persona("persona", PersonaConfig(role="persona", speaker="speaker", persona="a helper"), client)
    alone = await role.act(ActRequest(prompt="Hi"))
    assert alone.text.startswith("You are persona: a helper.")
    cast = await role.act(
        ActRequest(prompt="Hi", state={"speaker": {"name": "Poet {{ x }}", "profile": "Writes verse."}})
    )
    assert cast.text.startswith("You are Poet {{ x }}: Writes verse.")  # a name is text, never a template
    assert "speak only as Poet {{ x }}" in cast.text


# -- whole runs on the scripted backend -------------------------------------------------------------------------
RULES = [  # (match, reply): the first match wins; hand-computed scores below
    ("Do not solve the task yet", "Participants: AI Assistant (you); Geographer\n\nProfiles:\n - Geographer: Knows."),
    ("Now it is your turn", "Finish collaboration!"),
    ("Present the final solution of the collaboration", "Final answer: Ottawa"),
    (r"can only be either AI Assistant \(you\) or Expert", "Participants: Expert\n\nCanberra Mars Tokyo Ottawa"),
    ("provide their profiles", "Final answer: Tokyo, Ottawa and Canberra"),
    ("Start collaboration!", "Participants: Expert\n\nFinish collaboration!\nFinal answer: Canberra Mars Tokyo Ottawa"),
    ("Make a plan then write", "Plan:\nMars first.\n\nStory:\nTokyo"),
    ("Your feedback:", "Mention Tokyo and Ottawa."),
    ("Feedback: Mention", "Canberra, Tokyo and Ottawa"),
    ("incorporates the answers", "Canberra and Mars"),
    ('link the 2 given words: "director, popcorn"', "Answer: Cinema."),
    ('link the 2 given words: "pine, soap"', "Bath"),
    ('associated with the word "Cinema" from', "Answer: director, kiss, popcorn."),
    ('associated with the word "Bath" from', "Answer: soap, razor"),
]
STORIES = [{"topic": "a robot chef", "questions": ["Capital of Australia?", "The Red Planet?"],
            "answers": [["Canberra"], ["Mars"]], "question_ids": ["a", "b"]},
           {"topic": "a pirate ship", "questions": ["Capital of Japan?", "Capital of Canada?"],
            "answers": [["Tokyo"], ["Ottawa"]], "question_ids": ["c", "d"]}]  # fmt: skip
# (mean score over the two stories, parse rate): story 1 needs Canberra and Mars, story 2 Tokyo and Ottawa
EXPECTED = {
    "standard": (0.5, 1.0),  # "Canberra and Mars": 2/2 and 0/2
    "cot": (0.25, 1.0),  # only the story counts, not the plan: 0/2 and 1/2
    "self_refine": (0.75, 1.0),  # the refined answer "Canberra, Tokyo and Ottawa": 1/2 and 2/2
    "spp": (1.0, 1.0),
    "spp_profile": (0.75, 1.0),
    "spp_fixed_persona": (0.0, 0.0),  # no "Final answer:": unparsed, so wrong although the names are there
    "spp_multi": (0.25, 1.0),  # the assistant's final answer "Ottawa": 0/2 and 1/2
}


def scripted_run(tmp_path: Path, *overrides: str) -> schola.RunResult:
    (tmp_path / "conf" / "backend").mkdir(parents=True, exist_ok=True)
    rules = [{"match": match, "reply": reply} for match, reply in RULES]
    (tmp_path / "conf" / "backend" / "spp_rules.yaml").write_text(yaml.safe_dump({"kind": "scripted", "rules": rules}))
    return schola.run("spp", ["backend=spp_rules", "scenario.scripted=[]", *overrides],
                      config_dir=[tmp_path / "conf"], run_dir=tmp_path / "run")  # fmt: skip


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_scores_trivia_as_computed_by_hand(tmp_path: Path, variant: str) -> None:
    write_jsonl(tmp_path / "stories.jsonl", STORIES)
    result = scripted_run(tmp_path, f"scenario.variant={variant}", "scenario.data.path=stories.jsonl")
    assert result.ok, result.message
    assert (result.metric("score").value, result.metric("parse_rate").value) == EXPECTED[variant]
    turns = [e for e in read_jsonl(result.run_dir / "transcript.jsonl") if e["node"].endswith("turn")]
    assert len(turns) == (2 if variant == "spp_multi" else 0)  # one persona turn per story: it said "Finish"


def test_the_prompts_keep_the_authors_shape(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "stories.jsonl", STORIES[:1])
    statement = (
        "Write a short and coherent story about a robot chef that incorporates the answers to the following 2 "
        "questions: Capital of Australia? The Red Planet?"
    )
    prompts = {}
    for variant in ("spp", "standard", "cot"):
        result = scripted_run(
            tmp_path / variant,
            f"scenario.variant={variant}",
            f"scenario.data.path={tmp_path / 'stories.jsonl'}",
            "scenario.params.answer_cue=false",  # the authors' prompt; the default's cue is checked below
        )
        [line] = read_jsonl(result.run_dir / "transcript.jsonl")
        prompts[variant] = line["prompt"]
    cued = scripted_run(tmp_path / "cued", f"scenario.data.path={tmp_path / 'stories.jsonl'}")
    [line] = read_jsonl(cued.run_dir / "transcript.jsonl")
    assert line["prompt"] == prompts["spp"] + (
        '\nRemember to present your final solution with the prefix "Final answer:".\nFinal answer:\n'
    )
    spp = prompts["spp"]
    assert spp.startswith("When faced with a task, begin by identifying the participants who will contribute")
    assert spp.count("Example Task ") == 2 and spp.count("Finish collaboration!") == 2
    assert spp.index("Participants: AI Assistant (you); Math Expert") < spp.index("Start collaboration!")
    assert spp.endswith(
        f'Remember to present your final solution with the prefix "Final answer:".\n\nTask: {statement}\n'
    )
    assert prompts["standard"] == statement + "\n"
    assert (
        prompts["cot"] == statement + "\n\nMake a plan then write. Your output should be of the following format:\n\n"
        "Plan:\nYour plan here.\n\nStory:\nYour story here.\n"
    )


def test_codenames_gives_the_spymasters_hint_to_the_guesser(tmp_path: Path) -> None:
    boards = [
        {"idx": 0, "word_list": ["director", "kiss", "popcorn", "street"], "target_words": ["director", "popcorn"]},
        {"idx": 1, "word_list": ["pine", "soap", "fog", "razor"], "target_words": ["pine", "soap"]},
    ]
    write_jsonl(tmp_path / "boards.jsonl", boards)
    for variant, expected in [("cot", (0.75, 1.0)), ("spp_fixed_persona", (0.0, 0.0))]:
        result = scripted_run(tmp_path / variant, f"scenario.variant={variant}", "scenario.data.task=codenames",
                              f"scenario.data.path={tmp_path / 'boards.jsonl'}")  # fmt: skip
        assert result.ok, result.message
        # cot: hint "Cinema." -> "Cinema", guesses 2/2 targets; hint "Bath" (no "Answer:", used whole), 1/2.
        # spp_fixed_persona: the spymaster's reply has no "Final answer:", so neither board scores.
        assert (result.metric("score").value, result.metric("parse_rate").value) == expected


def test_codenames_skips_the_guesser_when_the_hint_did_not_parse(tmp_path: Path) -> None:
    """spp_fixed_persona's spymaster reply has no "Final answer:": the guesser was asked about the word ""."""
    boards = [
        {"idx": 0, "word_list": ["director", "kiss", "popcorn", "street"], "target_words": ["director", "popcorn"]}
    ]
    write_jsonl(tmp_path / "boards.jsonl", boards)
    result = scripted_run(tmp_path, "scenario.variant=spp_fixed_persona", "scenario.data.task=codenames",
                          f"scenario.data.path={tmp_path / 'boards.jsonl'}")  # fmt: skip
    assert result.ok, result.message
    prompts = [e["prompt"] for e in read_jsonl(result.run_dir / "transcript.jsonl")]
    assert len(prompts) == 1 and 'associated with the word ""' not in prompts[0]  # the spymaster only
    [line] = read_jsonl(result.run_dir / "results.jsonl")
    [details] = line["score_details"]["score"]
    assert line["scores"]["score"] == 0.0
    assert details["explanation"] == "the spymaster's hint was not found in its reply: the guesser was not asked"
    assert unwrap("Final answer: .", task="codenames", variant="spp") == {"text": ".", "parsed": False}


def test_spp_multi_stops_at_the_turn_limit_taking_turns_in_order(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "stories.jsonl", STORIES[:1])
    (tmp_path / "conf" / "backend").mkdir(parents=True)
    talk = [("Now it is your turn", "More work is needed."), *RULES]
    rules = [{"match": match, "reply": reply} for match, reply in talk]
    (tmp_path / "conf" / "backend" / "talk.yaml").write_text(yaml.safe_dump({"kind": "scripted", "rules": rules}))
    result = schola.run("spp", ["backend=talk", "scenario.scripted=[]", "scenario.variant=spp_multi",
                                "scenario.params.max_turns=3", "scenario.data.path=stories.jsonl"],
                        config_dir=[tmp_path / "conf"], run_dir=tmp_path / "run")  # fmt: skip
    assert result.ok, result.message
    turns = [e["prompt"] for e in read_jsonl(result.run_dir / "transcript.jsonl") if e["node"].endswith("turn")]
    assert [t.rsplit("Now it is your turn, ", 1)[1].split(":")[0] for t in turns] == [
        "Geographer", "AI Assistant (you)", "Geographer"]  # fmt: skip
    assert "Geographer: More work is needed.\n\nAI Assistant (you): More work is needed." in turns[2]


@pytest.mark.parametrize("task", ["trivia_creative_writing", "codenames", "logic_grid_puzzle"])
def test_the_scenarios_own_scripted_replies_run_every_variant(tmp_path: Path, task: str) -> None:
    for variant in VARIANTS:
        result = schola.run("spp", ["backend=scripted", f"scenario.variant={variant}", f"scenario.data.task={task}",
                                    "scenario.data.items=2"], run_dir=tmp_path / variant)  # fmt: skip
        assert result.ok and result.metric("parse_rate").value == 1.0, (variant, result.message)
        for episode in result.episodes:
            if task == "codenames":  # the scripted spymaster hints with a target; the guesser names the hint
                hint = episode["outputs"]["solved"][0]["text"]
                assert hint in episode["inputs"]["target_words"]
                assert episode["outputs"]["guessed"][0]["text"].startswith(hint)
                assert episode["scores"]["score"] >= 0.5


def test_a_sweep_reports_spp_and_spp_multi_side_by_side_on_the_same_items(cli: Any, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    code, out = cli("run", "-m", "scenario=spp", "backend=scripted", "scenario.data.task=codenames",
                    "scenario.variant=spp,spp_multi", f"hydra.sweep.dir={sweep}")  # fmt: skip
    assert code == 0, out
    runs = sorted(p.parent for p in sweep.rglob("results.jsonl"))
    items = [sorted((json.loads(x)["episode"], json.dumps(json.loads(x)["inputs"]["word_list"]))
                    for x in (r / "results.jsonl").read_text().splitlines()) for r in runs]  # fmt: skip
    assert len(runs) == 2 and items[0] == items[1]
    code, out = cli("report", str(sweep))
    assert code == 0, out
    report = (sweep / "report.csv").read_text()
    assert "spp_multi" in report and ",score," in report


def test_replies_without_the_final_answer_format_score_0_in_n_and_the_caption_says_so(cli: Any, tmp_path: Path) -> None:
    """The embedded model never wrote "Final answer:": every score was a silent 0. They still count in n (the
    task was failed), parse_rate says how many replies had the format, and the caption line says both."""
    run = tmp_path / "r"
    code, out = cli("run", "backend=scripted", "scenario=spp", "scenario.scripted=[{match: Task, reply: 'Title: A story.'}]",
                    f"hydra.run.dir={run}")  # fmt: skip
    assert code == 0, out
    saved = json.loads((run / "metrics.json").read_text())
    rows = {m["name"]: m for m in saved["metrics"]}
    assert rows["score"]["value"] == 0 and rows["score"]["n"] == 3 and rows["parse_rate"]["value"] == 0
    assert "scores 0 and counts in n" in saved["caption"] and "parse_rate" in saved["caption"]
