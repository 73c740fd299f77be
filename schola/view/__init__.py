"""`schola view RUN_OR_SWEEP_DIR`: one self-contained HTML file (inline script and style, no network, works from
file://) showing a run — status, redacted config, usage by role, metrics with CIs, plots, every episode as a
conversation, the graph with call counts — or a sweep's runs side by side.

Model output and data are untrusted: the data travels as a JSON block in which `<`, `>` and `&` are escaped (so no
`</script>` can close it), the page builds its DOM with text nodes only, and a Content-Security-Policy lets no
script run but the page's own (by hash), loads nothing from the network and allows images only as data URIs.

`--serve` serves the same page on 127.0.0.1 while the run goes (schola.view.serve): it polls the server for the
run's files as they grow.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import html
import re
import sys
import webbrowser
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from schola.errors import ConfigError, ScholaError
from schola.store import write_atomic
from schola.view.blocks import EpisodeBlocks, to_json  # (light: `schola run` imports it as it starts)

__all__ = ["build_html", "main", "write_report"]

HERE = Path(__file__).parent
REPORT = "report.html"
_PLACEHOLDER = re.compile(r"@@(\w+)@@")


def script_json(obj: Any) -> str:
    """JSON that is safe inside <script type="application/json">: no `<`, `>` or `&` (and no JS line separators)."""
    return script_safe(to_json(obj))


def script_safe(text: str) -> str:
    """JSON text made safe inside <script type="application/json"> (`script_json`)."""
    for raw, escaped in (
        ("&", "\\u0026"),
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(raw, escaped)
    return text


def page(payload: dict[str, Any], title: str) -> str:
    """The HTML page around `payload`; the CSP admits only the page's own script, by its hash (and, for the live
    page, `payload["live"]`, fetches from the server that served it)."""
    return "".join(page_pieces(payload, title))


def page_pieces(payload: dict[str, Any], title: str) -> Iterator[str]:
    """`page` in pieces, its data block as it is made (`json_pieces`: a run's episodes are written as they are
    read, never held whole)."""
    from schola.view.payload import json_pieces

    script = (HERE / "view.js").read_text(encoding="utf-8")
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
    csp = (
        f"default-src 'none'; script-src 'sha256-{digest}'; style-src 'unsafe-inline'; img-src data:; "
        "base-uri 'none'; form-action 'none'" + ("; connect-src 'self'" if "live" in payload else "")
    )
    fields = {"csp": [csp], "title": [html.escape(title)], "data": json_pieces(payload, script_safe),
              "script": [script]}  # fmt: skip
    # one pass: text put in by a field is never scanned for placeholders again
    template = (HERE / "page.html").read_text(encoding="utf-8")
    at = 0
    for m in _PLACEHOLDER.finditer(template):
        yield template[at : m.start()]
        yield from fields[m.group(1)]
        at = m.end()
    yield template[at:]


def is_run(path: Path) -> bool:
    return (path / "metrics.json").is_file()


def build_html(path: Path) -> str:
    """The report of a run directory, or of every run below a folder (a sweep)."""
    return "".join(html_pieces(path))


def html_pieces(path: Path, blocks: EpisodeBlocks | None = None) -> Iterator[str]:
    """The report of a run directory or a sweep, in pieces: each run's episodes are read as the page is written
    (a million-episode run's page is never held in memory). Checks and reads everything else first, so a damaged
    file is a ConfigError before the first piece. `blocks`: a run's episode entries built as it went
    (`run_payload`)."""
    from schola.view.payload import run_payload, sweep_payload

    if not path.is_dir():
        raise ConfigError(f"{path} is not a folder (expected a run directory or a sweep's folder)")
    if is_run(path):
        run = run_payload(path, stream=True, blocks=blocks)
        payload: dict[str, Any] = {"kind": "run", "runs": [run], "sweep": None}
        title = f"{run['scenario']} · {run['status'].get('status', '?')} · schola view"
    else:
        sweep = sweep_payload(path, stream=True)
        runs = sweep.pop("runs")
        payload = {"kind": "sweep", "runs": runs, "sweep": sweep}
        title = f"sweep of {len(runs)} runs · schola view"
    return page_pieces(payload, title)


def write_page(path: Path, text: str | Iterable[str]) -> Path:
    """Write the page whole (`write_atomic`: never through a link), as its pieces come. A derived file, not the
    run's: it needs no run lock, so a run can be viewed while it is written."""
    if path.is_dir():
        raise ConfigError(f"{path} is a folder; give a file name such as report.html", key="--out")
    if not path.parent.is_dir():
        raise ConfigError(f"the folder {path.parent} does not exist", key="--out")
    return write_atomic(path, text)


def write_report(run_dir: Path, blocks: EpisodeBlocks | None = None) -> Path:
    """Write report.html into a run directory (`schola run` calls this at the end, with the episode entries the run
    built as it went), as it is made; returns its path."""
    run_dir = Path(run_dir)
    try:
        return write_page(run_dir / REPORT, html_pieces(run_dir, blocks))
    finally:
        if blocks is not None:
            blocks.close()


def main(argv: list[str]) -> int:
    """`schola view RUN_OR_SWEEP_DIR [--out FILE.html] [--open] | --serve [--port N]`; returns the exit code."""
    parser = argparse.ArgumentParser(prog="schola view", description=__doc__.splitlines()[0])
    parser.add_argument("path", help="a run directory, or a folder with runs below it (a sweep)")
    parser.add_argument("--out", help=f"the HTML file to write (default: PATH/{REPORT})")
    parser.add_argument("--open", action="store_true", help="open it in the default browser")
    parser.add_argument("--serve", action="store_true", help="serve it live on 127.0.0.1 while the run goes")
    parser.add_argument("--port", type=int, default=8765, help="--serve's port on 127.0.0.1 (0: any free one)")
    try:
        ns = parser.parse_args(argv)
    except SystemExit as e:
        return 0 if e.code in (0, None) else 2
    root = Path(ns.path)
    try:
        if ns.serve:
            from schola.view.serve import serve

            return serve(root, ns.port, page)
        out = write_page(Path(ns.out) if ns.out else root / REPORT, html_pieces(root))
    except ScholaError as e:
        print(f"schola: error: {e}", file=sys.stderr)
        return e.exit_code
    print(f"written: {out} ({out.stat().st_size / 1e6:.2f} MB)")
    if ns.open:
        webbrowser.open(out.resolve().as_uri())
    return 0
