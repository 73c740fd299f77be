"""Resume, in one place: which keys may differ between a run and its continuation, the saved config with the
user's allowed changes, and the check that a resumed run is the same experiment on the same data.

A resumed run (`schola run resume=DIR [changes]`) continues from `DIR/config.yaml` as it was saved: finished
episodes (and their transcript lines) are kept, unfinished ones run again, the ledger continues (so `budget.*`
limits the whole run across resumes), and only the keys below may change."""

from __future__ import annotations

import hashlib
import json
from array import array
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from schola.errors import ConfigError

if TYPE_CHECKING:
    from schola.plan import Plan
    from schola.schema import Files

# Bookkeeping keys never describe the experiment: where its run continues from, the file its scenario came from,
# the line that explains its table, where replies are cached. `schola report` leaves them out when it shows what differs between runs.
BOOKKEEPING = ("resume", "scenario.source", "scenario.caption", "cache.")
# Keys that may change on resume: bookkeeping, how much may be spent, how fast it runs and where the endpoints
# are. Everything else must be as the run was started.
FREE_PREFIXES = (*BOOKKEEPING, "budget.", "run.concurrency", "run.executor", "run.ray.", "run.max_failed")
FREE_SUFFIXES = (
    ".base_url", ".base_urls", ".api_key_env", ".timeout_s", ".max_retries", ".max_concurrency", ".balance",
    ".revive_s", ".router", ".serve",
)  # fmt: skip
FREE_TEXT = (
    "budget.*, run.concurrency, run.executor, run.ray.*, run.max_failed, cache.*, scenario.caption and endpoints (*.base_url, "
    "*.timeout_s, *.max_concurrency)"
)


def bookkeeping(key: str) -> bool:
    """True for a key that never describes the experiment."""
    return key.startswith(BOOKKEEPING)


def free(key: str) -> bool:
    """True for a key that may differ between a run and its resume."""
    return key.startswith(FREE_PREFIXES) or key.endswith(FREE_SUFFIXES)


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """A nested config as {dotted.key: value}."""
    if isinstance(d, dict) and d:
        out: dict[str, Any] = {}
        for k, v in d.items():
            out |= flatten(v, f"{prefix}.{k}" if prefix else str(k))
        return out
    return {prefix: d}


_MISSING = object()


def _expand(overrides: list[str]) -> list[tuple[str, Any]]:
    """Overrides (parsed by Hydra's grammar, as everywhere) as (dotted key, value) pairs; a mapping value
    (`backend={kind: x}`) becomes one pair per leaf."""
    from schola.compose import parse_overrides

    pairs: list[tuple[str, Any]] = []
    for o, parsed in zip(overrides, parse_overrides(overrides), strict=True):
        if parsed.is_sweep_override():
            raise ConfigError(f"'{o}' sweeps several values; a resumed run is one run", file="command line")
        key, value = parsed.key_or_group, None if parsed.is_delete() else parsed.value()
        if isinstance(value, dict) and value:
            pairs += [(k, v) for k, v in flatten(value, key).items()]
        else:
            pairs.append((key, value))
    return pairs


def saved_config(run_dir: str | Path, overrides: list[str]) -> tuple[dict[str, Any], Files]:
    """The config to continue `run_dir` with: the saved one, with the user's changes to free keys.

    A change to any other key is a ConfigError naming it; choosing the same backend or scenario again
    (`backend=scripted` for a run that used it) is allowed and changes nothing."""
    from omegaconf import OmegaConf

    from schola.schema import Files
    from schola.store import RunStore

    directory = Path(run_dir)
    if not (directory / "config.yaml").is_file():
        raise ConfigError(f"{run_dir} is not a run directory (no config.yaml)", key="resume")
    store = RunStore(directory)
    saved = store.read_config()
    before = flatten(saved)
    changes = []
    pairs = _expand(overrides)
    for key, value in pairs:
        if key == "resume" or key.startswith("hydra."):
            continue
        if key in ("backend", "scenario") and isinstance(value, str):  # a group choice: the same one is fine
            was = saved[key].get("kind" if key == "backend" else "name")
            if value != was:
                raise ConfigError(
                    f"cannot change {key} when resuming (the run used {key}={was}); a resumed run is the same "
                    "experiment: start a new run instead",
                    key=key,
                    file="command line",
                )
            continue
        if before.get(key, _MISSING) == value:
            continue
        if not free(key):
            shown = f"the run used {before[key]!r}" if key in before else "the run did not set it"
            raise ConfigError(
                f"cannot change '{key}' when resuming ({shown}; you gave {value!r}): a resumed run is the same "
                f"experiment: only {FREE_TEXT} may change; start a new run for another experiment",
                key=key,
                file="command line",
            )
        changes.append((key, value))
    merged = OmegaConf.create(saved)
    for key, value in changes:
        try:
            OmegaConf.update(merged, key, value, merge=True, force_add=True)
        except Exception as e:  # OmegaConf's own errors: a key it cannot set
            raise ConfigError(f"bad override: {str(e).splitlines()[0]}", key=key, file="command line") from None
    raw: dict[str, Any] = OmegaConf.to_container(merged, resolve=False)  # type: ignore[assignment]
    raw["resume"] = str(directory)
    if isinstance(raw.get("cache"), dict) and "cache.dir" not in dict(pairs):
        # a folder of the machine that wrote the run (the directory may come from another one): a resume writes
        # replies where its own user keeps them, never where a saved config points
        raw["cache"]["dir"] = None
    source = raw["scenario"].get("source")
    return raw, Files.of_saved(str(store.config_path), source if source and Path(source).is_file() else None)


def check_resume(saved: dict[str, Any], plan: Plan, finished: Iterable[dict[str, Any]], *, run_dir: str) -> None:
    """A resumed run must be the same experiment: only free keys may change, and the finished episodes must
    have the inputs the data gives them now."""
    a, b = flatten(saved), flatten(plan.raw)
    diff = sorted(k for k in set(a) | set(b) if not free(k) and a.get(k) != b.get(k) and a.get(k) != "***")
    if diff:
        shown = "; ".join(f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in diff[:5])
        raise ConfigError(
            f"cannot resume {run_dir} with a different configuration ({shown}); only {FREE_TEXT} may change",
            key=diff[0],
        )
    # one pass over the finished episodes (each id's hash and its inputs' digest: 16 bytes, not the record), then
    # one over the plan's, in batches, looking up each id among them
    import numpy as np

    from schola.data import id_hashes, take

    ids, digests = array("q"), array("q")
    for r in finished:
        ids.append(hash(r["episode"]))
        digests.append(_digest(r["inputs"]))
    if not ids:
        return
    keys = np.frombuffer(ids, dtype=np.int64)
    order = np.argsort(keys, kind="stable")
    keys, sums = keys[order], np.frombuffer(digests, dtype=np.int64)[order]
    del ids, digests, order
    hashes = np.frombuffer(id_hashes(plan.episodes), dtype=np.int64)
    at = np.searchsorted(keys, hashes).clip(0, len(keys) - 1)
    found = np.flatnonzero(keys[at] == hashes)
    if not len(found):
        return
    for i, e in zip(found.tolist(), take(plan.episodes, found)):
        same = sums[at[i] : np.searchsorted(keys, hashes[i], side="right")]  # an id saved twice: each line
        if (same != _digest(json.loads(json.dumps(e, default=str)))).any():
            raise ConfigError(
                f"episode '{e['id']}' of {run_dir} was run on other data than scenario.data gives now; "
                "resume needs the same data (start a new run instead)",
                key="scenario.data",
            )


def _digest(inputs: Any) -> int:
    """An episode's inputs as saved (JSON, keys sorted), as 8 bytes: two equal inputs have the same digest."""
    text = json.dumps(inputs, sort_keys=True, ensure_ascii=False, default=str)
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little",
                          signed=True)  # fmt: skip


def same_inputs(inputs: dict[str, Any], saved: dict[str, Any]) -> bool:
    """Whether an episode's inputs now are those it was run on (compared as saved: through JSON)."""
    return bool(json.loads(json.dumps(inputs, default=str)) == saved)
