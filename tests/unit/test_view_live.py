"""`schola view --serve`: the live viewer follows a run another process is writing (episodes appear as they finish,
the metrics over them refresh), answers only on 127.0.0.1, and stops cleanly on Ctrl-C."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from schola.errors import ConfigError
from schola.view import page
from schola.view.serve import make_server
from tests.browser.runs import CLI, start_run

EPISODES = 6


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A live server (a free port) on an empty folder that a run will write into."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    server = make_server(run_dir, 0, page)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", run_dir
    server.shutdown()
    server.server_close()


def test_the_json_endpoint_follows_a_run_another_process_writes(served: tuple[str, Path], tmp_path: Path) -> None:
    url, run_dir = served
    assert httpx.get(f"{url}/data.json").json()["runs"] == []  # nothing written yet: no run, and no error
    proc = start_run(tmp_path, run_dir, EPISODES, latency_s=0.15)
    seen: list[tuple[str, int, int]] = []  # (status, finished episodes, rows of metrics)
    versions = set()
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        data = httpx.get(f"{url}/data.json").json()
        versions.add(data["live"]["version"])
        if data["runs"]:
            run = data["runs"][0]
            seen.append((run["status"]["status"], run["counts"]["finished"], len(run["metrics"])))
        time.sleep(0.1)
    assert proc.wait(timeout=10) == 0, proc.stderr.read().decode() if proc.stderr else ""
    final: dict[str, Any] = httpx.get(f"{url}/data.json").json()
    assert final["kind"] == "run" and final["runs"][0]["status"]["status"] == "finished"
    assert final["runs"][0]["counts"]["finished"] == EPISODES
    going = [(n, rows) for status, n, rows in seen if status == "running"]
    assert going, seen
    counts = [n for n, _ in going]
    assert counts == sorted(counts) and len(set(counts)) >= 3, counts  # the count grew while the run went
    assert any(0 < n < EPISODES and rows for n, rows in going), going  # metrics over the finished ones, mid-run
    assert len(versions) >= 3
    # unchanged since the version the page holds: nothing to send again
    again = httpx.get(f"{url}/data.json", params={"v": final["live"]["version"]})
    assert again.status_code == 204 and again.content == b""


def test_the_page_fetches_only_from_its_own_server(served: tuple[str, Path]) -> None:
    url, _ = served
    res = httpx.get(f"{url}/")
    assert res.status_code == 200 and res.headers["content-type"].startswith("text/html")
    assert "connect-src 'self'" in res.text and "default-src 'none'" in res.text
    block = res.text.split('id="schola-data">', 1)[1].split("</script>", 1)[0]
    assert json.loads(block)["live"]["poll_ms"] > 0
    assert httpx.get(f"{url}/metrics.json").status_code == 404  # no file is served by its name


def test_a_request_for_another_host_is_refused(served: tuple[str, Path]) -> None:
    """A page of another site that rebinds its name to 127.0.0.1 sends its own Host: refused."""
    url, _ = served
    assert httpx.get(f"{url}/data.json", headers={"Host": "evil.example:80"}).status_code == 403
    assert httpx.get(f"{url}/data.json", headers={"Host": "localhost"}).status_code == 200


def test_a_bad_port_or_folder_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--port"):
        make_server(tmp_path, 70000, page)
    with pytest.raises(ConfigError, match="not a folder"):
        make_server(tmp_path / "missing", 0, page)


def test_the_server_says_where_it_listens_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", CLI, "view", str(tmp_path), "--serve", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "http://127.0.0.1:" in line and "bound to 127.0.0.1 only" in line, line
        address = line.split("live at ", 1)[1].split(" ", 1)[0]
        assert httpx.get(f"{address}data.json").status_code == 200
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)  # a server that ignored Ctrl-C would run on
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and "stopped" in out and "Traceback" not in err, err


def test_it_follows_a_sweeps_new_runs(served: tuple[str, Path], tmp_path: Path) -> None:
    """Served on a sweep's folder, the page lists each run as it begins (Hydra's `.hydra/config.yaml` is no run)."""
    url, root = served
    (root / ".hydra").mkdir()
    (root / ".hydra" / "config.yaml").write_text("{}\n")
    names = []
    for arm in ("0", "1"):
        proc = start_run(tmp_path, root / arm, 2, latency_s=0.05)
        assert proc.wait(timeout=120) == 0
        data = httpx.get(f"{url}/data.json").json()
        assert data["kind"] == "sweep"
        names.append([r["name"] for r in data["runs"]])
    assert names == [["0"], ["0", "1"]]
    assert data["sweep"]["arms"] == ["0", "1"] and data["sweep"]["plot"].startswith("data:image/png")
