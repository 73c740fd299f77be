"""Shell completion: `eval "$(schola completion bash)"` (or zsh, through bashcompinit) completes commands,
`scenario=` and `backend=` with the names Schola knows (built-in, --config-dir folders are not read), and the
config keys of `schola run --help` (top level, the chosen backend's, the chosen scenario's), each as `KEY=`.
The script asks `schola complete WORDS...` for the candidates, so they always match the installed version."""

from __future__ import annotations

from collections.abc import Sequence
from importlib.resources import files

SCRIPT = {
    "bash": """\
_schola_complete() {
    local IFS=$'\\n'
    COMPREPLY=( $(schola complete "${COMP_WORDS[@]:1:COMP_CWORD}" 2>/dev/null) )
}
complete -o default -o nospace -F _schola_complete schola
""",
}
SCRIPT["zsh"] = "autoload -U +X bashcompinit && bashcompinit\n" + SCRIPT["bash"]
COMMANDS = ("run", "check", "list", "show", "report", "view", "train", "cache", "completion")


def script(shell: str) -> str:
    """The completion script for `shell` (bash or zsh)."""
    return SCRIPT[shell]


def candidates(words: Sequence[str]) -> list[str]:
    """What may follow: `words` are the command line after `schola`, the last one being completed (maybe empty)."""
    *before, cur = list(words) or [""]
    if not before:
        return [c for c in COMMANDS if c.startswith(cur)]
    command = before[0]
    if command == "cache":
        return [a for a in ("info", "prune") if a.startswith(cur)]
    if command == "completion":
        return [s for s in SCRIPT if s.startswith(cur)]
    if command not in ("run", "check"):
        return []  # paths: the shell's own completion (-o default)
    key, eq, _ = cur.partition("=")
    if eq:
        return (
            [f"{key}={n}" for n in names(key) if f"{key}={n}".startswith(cur)] if key in ("scenario", "backend") else []
        )
    chosen = {k: v for k, _, v in (w.partition("=") for w in before) if k in ("scenario", "backend")}
    return [k for k in keys(chosen.get("scenario"), chosen.get("backend")) if k.startswith(cur)]


def names(group: str) -> list[str]:
    """The options of a config group: the built-in YAMLs, and for scenarios the plugins' (from entry points)."""
    from schola import plugins
    from schola.compose import builtin_options

    found = set(builtin_options(group))
    if group == "scenario":
        found |= set(plugins.scenarios.names())
    return sorted(found)


def keys(scenario: str | None, backend: str | None) -> list[str]:
    """`KEY=` for the groups, the top-level keys, and the keys of the chosen (else default) backend and scenario."""
    import yaml

    from schola.compose import default_scenario
    from schola.schema import Config, config_keys

    conf = files("schola.conf")
    out = ["scenario=", "backend="]
    out += [f"{k}=" for k, _, _ in config_keys(Config) if k.split(".")[0] not in ("scenario", "backend")]
    for group, name in (("backend", backend or "embedded"), ("scenario", scenario or default_scenario())):
        path = conf.joinpath(group, f"{name}.yaml")
        body = yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else None
        if isinstance(body, dict):
            out += [f"{group}.{k}=" for k in body if k != "defaults"]
    return out
