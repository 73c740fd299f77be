from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_wheel_maps_the_design_card_layout_and_carries_configs_and_data(tmp_path: Path) -> None:
    # built from a copy of the sources: a build never writes into the checkout (build/, *.egg-info)
    source = tmp_path / "src"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(".venv", ".git", "build", "runs", "*.egg-info", ".*cache*", "__pycache__"),
    )
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(source)],
        check=True, capture_output=True,
    )  # fmt: skip
    wheel = next(tmp_path.glob("schola-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in [
        "schola/cli.py", "schola/graph.py", "schola/backends/embedded.py",
        "schola/agents/teacher.py", "schola/scenarios/lbt/__init__.py",
        "schola/conf/config.yaml", "schola/conf/backend/embedded.yaml", "schola/conf/backend/scripted.yaml",
        "schola/conf/scenario/lbt.yaml",
    ]:  # fmt: skip
        assert required in names, required
    assert not any(n.startswith(("agents/", "scenarios/", "conf/", "tests/")) for n in names)
    # every scenario's bundled data, every config and the viewer's page travel with the package
    for folder, package in (("scenarios", "schola/scenarios"), ("conf", "schola/conf"), ("schola/view", "schola/view")):
        for path in (ROOT / folder).rglob("*"):
            if path.is_file() and path.suffix in (".yaml", ".jsonl", ".json", ".csv", ".html", ".js"):
                assert f"{package}/{path.relative_to(ROOT / folder).as_posix()}" in names, path
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    for group in ("schola.roles", "schola.scenarios", "schola.scorers", "schola.backends"):
        assert f"[{group}]" in text
