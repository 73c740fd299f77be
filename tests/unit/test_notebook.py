"""Schola in Jupyter: a RunResult shows as its metrics table, `episodes_frame()` has a column per input, output
and score, and docs/notebook.ipynb runs headless in a real ipykernel (nbclient) on the scripted backend."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

import schola
from schola.metrics import MetricRow
from schola.runtime import RunResult

NOTEBOOK = Path(__file__).parents[2] / "docs" / "notebook.ipynb"
TINY = """\
name: tiny
data:
  records:
    - {question: "What is 7 * 6?", answer: "42"}
    - {question: "What is 9 + 10?", answer: "19"}
roles:
  student: {role: student}
graph:
  - {id: solve, kind: agent, role: student, prompt: "{{ question }}", output: reply}
  - {id: correct, kind: score, scorer: numeric_match, inputs: {prediction: reply, target: answer}, output: correct}
  - {id: length, kind: score, scorer: value, inputs: {value: "reply | length"}, labels: {phase: before}, output: n}
"""


def test_a_run_result_renders_in_jupyter_as_its_metrics_table(tmp_path: Path) -> None:
    result = schola.run("lbt", ["backend=scripted", "run.episodes=2"], run_dir=tmp_path / "run")
    html = result._repr_html_()
    assert html.count("<table") == 1 and html.count("<tr>") == len(result.metrics) + 1  # a header, a row each
    assert "finished" in html and str(tmp_path / "run") in html
    row = result.metric("exam_accuracy")
    assert row is not None and row.ci_low is not None and row.ci_high is not None
    assert f"<td>{row.value:.3f}</td>" in html and f"[{row.ci_low:.3f}, {row.ci_high:.3f}]" in html
    assert "rule=SUM" in html and "role=students" in html


def test_a_run_results_table_escapes_what_it_shows() -> None:
    row = MetricRow(name="<b>x</b>", labels={"k": "<script>alert(1)</script>"}, value=0.5)
    html = RunResult(Path("runs/<i>"), "budget", 4, message="stopped & <u>", metrics=[row])._repr_html_()
    assert "<script>" not in html and "<b>x" not in html and "<u>" not in html and "<i>" not in html
    assert "&lt;script&gt;" in html and "stopped &amp; &lt;u&gt;" in html


def test_episodes_frame_has_a_column_per_input_output_and_score(tmp_path: Path) -> None:
    lbt = schola.run("lbt", ["backend=scripted", "run.episodes=2"], run_dir=tmp_path / "lbt").episodes_frame()
    assert {"inputs.question", "inputs.answer", "inputs.exams", "outputs.rationales", "outputs.answers"} <= set(lbt)
    assert list(lbt["episode"]) == ["tp0", "tp1"] and list(lbt["round"]) == [0, 0]
    assert len(lbt["outputs.answers"][0]) == 4  # a list stays one cell
    (tmp_path / "tiny.yaml").write_text(TINY)
    tiny = schola.run(tmp_path / "tiny.yaml", ["backend=scripted"], run_dir=tmp_path / "tiny").episodes_frame()
    assert {"inputs.question", "inputs.answer", "outputs.reply", "scores.correct", "scores.n{phase=before}"} <= {*tiny}
    assert list(tiny["scores.n{phase=before}"]) == [len(r) for r in tiny["outputs.reply"]]


def test_the_docs_notebook_runs_headless_in_a_real_kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two runs, a sweep and a plot, as a user runs them; well under 30 s on the scripted backend."""
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    start = time.monotonic()
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    assert time.monotonic() - start < 120  # a bound that proves it ends, not a benchmark
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    html = [o.data["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    assert any("exam_accuracy" in h and "<table" in h for h in html)  # a RunResult as its table
    assert any("image/png" in o.get("data", {}) for o in outputs)  # the plot
    assert (tmp_path / "runs" / "notebook-sweep" / "report.csv").is_file()
    assert len(list((tmp_path / "runs" / "notebook-sweep").glob("*/metrics.json"))) == 3
