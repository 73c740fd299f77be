"""Fuzzed scenario files, command lines and data files through `schola check` (in-process): every case is a
configuration error naming a file or key (exit 2) or passes validation (exit 0) — never a traceback, never exit 1.
Valid mutants also run on the scripted backend without exit 1.

The mutants come from the bundled scenario YAMLs that `schola check` accepts when the tests start (others are
being written while these run) and from the README's example; tests/reliability/mutate.py makes them."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.conftest import SCRIPTED
from tests.reliability.conftest import TookTooLong, schola
from tests.reliability.mutate import dump, fuzz_cases, get, mutant, mutate_data, parse, paths

CASES = 1_000  # check cases in all: 700 mutants of every kind, 300 milder ones (they reach deeper, and cost more)
SLOW_S = 10.0  # a single check taking longer is a failure too (an unbounded input)


def problem(code: int, out: str) -> str | None:
    """What is wrong with how a check ended, or None."""
    if "Traceback" in out:
        return "a traceback"
    if code not in (0, 2):
        return f"exit {code}"
    if code == 2:
        message = re.search(r"schola: error: (.*?): ", out, re.S)  # "<file>, key '<key>': ..." or "<path>: ..."
        where = message.group(1) if message else ""
        if not any(mark in where for mark in ("key '", "command line", "/", ".yaml")):
            return "an error that names no file or key"
    return None


def check_mutant(folder: Path, name: str, data: bytes, extra: list[str], counter: list[int]) -> tuple[int, Path]:
    counter[0] += 1
    path = folder / f"mutant{counter[0]}.yaml"
    path.write_bytes(data)
    try:
        code, out, _ = schola("check", str(path), *SCRIPTED, *extra, limit_s=SLOW_S)
    except (TookTooLong, MemoryError) as e:
        pytest.fail(f"check: {type(e).__name__} on a mutant of {name} with overrides {extra}:\n{data[:3000]!r}")
    bad = problem(code, out)
    assert bad is None, f"{bad} from a mutant of {name} with overrides {extra}:\n{data[:3000]!r}\n{out[-3000:]}"
    return code, path


FUZZ = settings(
    max_examples=CASES * 7 // 10,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure prints its whole mutant instead
    derandomize=True,  # CI runs the same cases every time
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def test_mutated_scenario_files_and_overrides_check_cleanly(bases: dict[str, str], tmp_path: Path) -> None:
    # seeded, not hypothesis-driven: the aggressive mutants share no structure for hypothesis to explore, and a
    # seed per case names every failure exactly (`random.Random(seed)` reproduces the mutant)
    for seed in range(FUZZ.max_examples):
        rng = random.Random(f"fuzz/{seed}")
        name = rng.choice(sorted(bases))
        data, extra = mutant(bases[name], rng)
        check_mutant(tmp_path, f"{name} (seed {seed})", data, extra, COUNTER)


@settings(FUZZ, max_examples=CASES - FUZZ.max_examples)
@given(rng=st.randoms(use_true_random=False))
def test_edited_values_of_scenario_files_check_cleanly(
    bases: dict[str, str], tmp_path: Path, rng: random.Random
) -> None:
    """Milder mutants (a value changed for another of its type), more of which pass validation."""
    name = rng.choice(sorted(bases))
    data, extra = mutant(bases[name], rng, mild=True)
    check_mutant(tmp_path, name, data, extra, COUNTER)


COUNTER = [0]
RUNS = 20


def test_valid_mutants_run_on_the_scripted_backend_without_exit_1(bases: dict[str, str], tmp_path: Path) -> None:
    """The first RUNS seeded mutants that pass `check` also run (3 episodes at most): exit 0, or a clear error
    (2 configuration, 3 backend, 4 budget) — never 1."""
    ran, seed = [], 0
    while len(ran) < RUNS and seed < 40 * RUNS:
        rng = random.Random(seed)
        seed += 1
        name = rng.choice(sorted(bases))
        data, extra = mutant(bases[name], rng, mild=seed % 2 == 0)
        code, path = check_mutant(tmp_path, name, data, extra, COUNTER)
        if code != 0:
            continue
        run_dir = tmp_path / f"run{seed}"
        code, out, _ = schola("run", str(path), *SCRIPTED, *extra, "run.episodes=3", f"hydra.run.dir={run_dir}")
        assert "Traceback" not in out and code in (0, 2, 3, 4), (
            f"exit {code} on a mutant of {name} {extra}:\n{out[-3000:]}"
        )
        ran.append((name, code))
    assert len(ran) == RUNS, f"only {len(ran)} of {seed} mutants passed check"
    assert sum(code == 0 for _, code in ran) >= RUNS // 2, ran  # most valid mutants run to the end


HUGE = 10**9


def test_every_size_parameter_is_bounded(bases: dict[str, str], tmp_path: Path) -> None:
    """Each whole number under a scenario's data: or params: set to HUGE is refused (exit 2) or checked in
    seconds: a size has a bound, or a generator is lazy."""
    unbounded = {}
    for name, text in sorted(bases.items()):
        doc = parse(text)
        for path in paths(doc):
            value = get(doc, path) if path and path[0] in ("data", "params") else None
            if isinstance(value, bool) or not isinstance(value, int):
                continue
            edited = parse(text)
            get(edited, path[:-1])[path[-1]] = HUGE
            file = tmp_path / f"{name}.yaml"
            file.write_text(dump(edited), encoding="utf-8")
            key = f"{name}: {'.'.join(map(str, path))}={HUGE}"
            try:
                code, out, _ = schola("check", str(file), *SCRIPTED, limit_s=SLOW_S, limit_mb=1024)
            except TookTooLong:
                unbounded[key] = f"check ran past {SLOW_S:g} s"
                continue
            except MemoryError:
                unbounded[key] = "check took more than 1 GB"
                continue
            if problem(code, out):
                unbounded[key] = out.strip()[-300:]
    assert not unbounded, "\n".join(f"{k}: {v}" for k, v in unbounded.items())


SCENARIOS = Path(__file__).parents[2] / "scenarios"
# scenario, its data file's suffix, the overrides naming the file `{f}`, the file's valid bytes
DATA_BASES: list[tuple[str, str, list[str], bytes]] = [
    ("comd", ".jsonl", ["scenario.data.path={f}"], (SCENARIOS / "comd" / "instructions.jsonl").read_bytes()),
    ("tom_teaching", ".jsonl", ["scenario.data.path={f}", "scenario.data.train_path={f}"],
     (SCENARIOS / "tom_teaching" / "bundled" / "yesno.jsonl").read_bytes()),
    ("mooc_grading", ".yaml", ["scenario.data.courses=['{f}']"],
     (SCENARIOS / "mooc_grading" / "courses" / "astronomy.yaml").read_bytes()),
    ("mooc_grading", ".csv", ["scenario.data.path={f}"],
     b"course,question,reference_answer,rubric,student_answer,instructor_grade,peer_grade_1,student\n"
     b'astro,Why seasons?,Axial tilt.,"- (5 points) tilt\n- (5 points) light","The tilt, mostly.",8,7,ana\n'
     b"astro,What is a light-year?,A distance.,- (10 points) distance,A time.,0,3,ana\n"),
    ("sight", ".csv", ["scenario.data.path={f}", "scenario.params.categories=[general,gratitude]"],
     b"comment,comment_id,video_name,playlist_name,annotator_H1_general,annotator_H1_gratitude,"
     b"annotator_H2_general,annotator_H2_gratitude\n"
     b'"Thanks, professor!",54.0,Lec 1,MIT 18.06,1.0,1.0,1.0,\n"muy bueno",7,Lec 3,MIT 18.01,,0.0,1.0,0.0\n'),
    ("spp", ".jsonl", ["scenario.data.path={f}"],
     json.dumps({"topic": "tea", "questions": ["Capital of Japan?"], "answers": [["Tokyo"]]}).encode() + b"\n"),
    ("instruct_mtl", ".yaml", ["scenario.data.instructions={f}"],
     (SCENARIOS / "instruct_mtl" / "instructions.yaml").read_bytes()),
    ("curriculum", ".csv", ["scenario.data.path={f}"],
     b"f1,f2,label\n" + b"".join(b"0.%d,0.%d,%s\n" % (i, i + 1, c) for i in range(5) for c in (b"a", b"b", b"c", b"d"))),
    ("arte", ".json", ["scenario.data.paths=['{f}']"],
     json.dumps({"examples": [{"input": f"{i} + 1 =", "target": str(i + 1)} for i in range(8)]}).encode()),
]  # fmt: skip
DATA_CASES = fuzz_cases(200)  # $SCHOLA_FUZZ_CASES=1000: the full run


def test_mutated_data_files_check_cleanly(tmp_path: Path) -> None:
    """Each scenario's data file, mutated (seeded), through `check`: exit 0 or 2 naming a file or key, in bounded
    time and memory — the data-file gate and every loader's own checks, never a traceback."""
    for seed in range(DATA_CASES):
        rng = random.Random(f"fuzz-data/{seed}")
        name, suffix, overrides, data = rng.choice(DATA_BASES)
        path = tmp_path / f"data{seed}{suffix}"
        path.write_bytes(mutate_data(data, rng))
        args = [f"scenario={name}", *SCRIPTED, *(o.format(f=path) for o in overrides)]
        try:
            code, out, _ = schola("check", *args, limit_s=SLOW_S)
        except (TookTooLong, MemoryError) as e:
            pytest.fail(
                f"check: {type(e).__name__} on a mutated {name} data file (seed {seed}):\n{path.read_bytes()[:3000]!r}"
            )
        bad = problem(code, out)
        assert bad is None, (
            f"{bad} from a mutated {name} data file (seed {seed}):\n{path.read_bytes()[:3000]!r}\n{out[-3000:]}"
        )


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c: c.pop("course"), "no 'course'"),  # a KeyError in generate: exit 1
        (lambda c: c["questions"][0].pop("reference_answer"), "questions[0] has no 'reference_answer'"),
        (lambda c: c["questions"][0]["rubric"][0].update(points="five"), "points: expected a number"),
    ],
)
def test_a_course_file_without_a_field_generate_reads_is_a_config_error(
    tmp_path: Path, edit: Any, message: str
) -> None:
    """Found by the data fuzz (SCHOLA_FUZZ_CASES=1000): mooc_grading's course file was checked for its rubric only."""
    course = yaml.safe_load((SCENARIOS / "mooc_grading" / "courses" / "astronomy.yaml").read_text(encoding="utf-8"))
    edit(course)
    path = tmp_path / "course.yaml"
    path.write_text(yaml.safe_dump(course), encoding="utf-8")
    code, out, _ = schola("check", "scenario=mooc_grading", *SCRIPTED, f"scenario.data.courses=['{path}']")
    assert code == 2 and str(path) in out and message in out, out
