"""Hydra glue: a user's scenario file made a `scenario` option (and checked: a shared scenario file can set only
scenario keys — no Hydra settings, no Python targets, no environment reads), config folders, the scenario YAML a
plugin ships, and composition with Hydra's errors turned into ConfigErrors."""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml

from schola.errors import ConfigError

MAX_SCENARIO_BYTES = 8 * 1024 * 1024  # larger data belongs in scenario.data.path
MAX_YAML_NODES = 2_000_000  # nodes after alias expansion: refuses "billion laughs" files in well under a second
MAX_YAML_DEPTH = 50  # levels of nesting (OmegaConf recurses about ten frames a level; scenarios use under 20)
YAML_SUFFIXES = (".yaml", ".yml")
_PACKAGE = re.compile(r"^\s*#\s*@package\s+(\S+)", re.M)
_FORBIDDEN_KEYS = {"hydra", "defaults", "_target_", "()", "class", "_partial_", "_args_"}
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_yaml_text(path: Path) -> str:
    """A YAML file's text, checked: a regular file of bounded size, UTF-8 (a bad byte is named by line)."""
    if not path.is_file():
        raise ConfigError("not a file", file=str(path))
    size = path.stat().st_size
    if size > MAX_SCENARIO_BYTES:
        raise ConfigError(
            f"{size:,} bytes; a scenario file holds at most {MAX_SCENARIO_BYTES:,} (put large data in a file "
            "named by scenario.data.path)",
            file=str(path),
        )
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ConfigError(f"not UTF-8: byte 0x{raw[e.start]:02x} at line {line}", file=str(path)) from None


def load_yaml(text: str, *, file: str) -> Any:
    """Parse YAML safely: the C loader where available, aliases expanded at most to MAX_YAML_NODES nodes."""
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"malformed YAML{where}: {getattr(e, 'problem', None) or e}", file=file) from None
    if node is not None and (depth := nesting(node)) is None:
        raise ConfigError("a recursive alias (an anchor used inside itself); refused", file=file)
    if node is not None and depth > MAX_YAML_DEPTH:  # type: ignore[operator]
        raise ConfigError(f"nested more than {MAX_YAML_DEPTH} levels deep; refused", file=file)
    sizes: dict[int, int] = {}

    def size(n: Any) -> int:  # nodes after alias expansion; shared nodes are counted once each time they are used
        if id(n) in sizes:
            return sizes[id(n)]
        sizes[id(n)] = 1  # a recursive alias counts once
        total = 1
        if isinstance(n, yaml.SequenceNode):
            total += sum(size(c) for c in n.value)
        elif isinstance(n, yaml.MappingNode):
            total += sum(size(k) + size(v) for k, v in n.value)
        sizes[id(n)] = total
        return total

    if node is not None and size(node) > MAX_YAML_NODES:
        raise ConfigError(f"the YAML expands to more than {MAX_YAML_NODES:,} nodes (aliases?); refused", file=file)
    for mapping in (n for n in _nodes(node) if isinstance(n, yaml.MappingNode)):
        seen: dict[str, Any] = {}
        for k, _ in mapping.value:
            if isinstance(k, yaml.ScalarNode) and k.tag != "tag:yaml.org,2002:merge":
                if k.value in seen:  # YAML would keep the second silently
                    first = seen[k.value].start_mark.line + 1
                    raise ConfigError(
                        f"'{k.value}' is set twice in one mapping, at lines {first} and {k.start_mark.line + 1}; "
                        "the second would silently replace the first",
                        file=file,
                    )
                seen[k.value] = k
    try:  # from the checked node: the text is parsed once
        return _Loader("").construct_document(node) if node is not None else None
    except yaml.YAMLError as e:
        raise ConfigError(f"malformed YAML: {e}", file=file) from None


def _nodes(root: Any) -> list[Any]:
    """Every node under `root`, each once (aliases followed once)."""
    nodes: dict[int, Any] = {}
    stack = [root]
    while stack:
        n = stack.pop()
        if n is None or id(n) in nodes:
            continue
        nodes[id(n)] = n
        if isinstance(n, yaml.SequenceNode):
            stack.extend(n.value)
        elif isinstance(n, yaml.MappingNode):
            stack.extend(c for pair in n.value for c in pair)
    return list(nodes.values())


def nesting(root: Any) -> int | None:
    """How deep a composed YAML node nests (aliases followed, each shared node measured once), or None when a node
    contains itself (a recursive alias). Iterative: a deep file must not exhaust Python's stack here."""

    def children(n: Any) -> list[Any]:
        if isinstance(n, yaml.SequenceNode):
            return list(n.value)
        if isinstance(n, yaml.MappingNode):
            return [c for pair in n.value for c in pair]
        return []

    depth: dict[int, int] = {}
    open_: set[int] = set()  # nodes on the path from the root to the one being measured
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        n, finished = stack.pop()
        if finished:
            depth[id(n)] = 1 + max((depth[id(c)] for c in children(n)), default=0)
            open_.discard(id(n))
        elif id(n) in open_:
            return None
        elif id(n) not in depth:
            open_.add(id(n))
            stack.append((n, True))
            stack.extend((c, False) for c in children(n))
    return depth[id(root)]


def check_scenario_text(text: str, *, file: str) -> dict[str, Any]:
    """A scenario file can set scenario keys only: running someone else's file is as safe as reading it."""
    for m in _PACKAGE.finditer(text):
        if m.group(1) != "scenario":
            raise ConfigError(
                f"'# @package {m.group(1)}' is not allowed: a scenario file sets scenario keys only "
                "(put run settings on the command line)",
                file=file,
            )
    body = load_yaml(text, file=file)
    if not isinstance(body, dict):
        raise ConfigError("expected a mapping (name:, roles:, graph:, ...)", file=file)

    def walk(o: Any, key: str) -> None:
        if isinstance(o, dict):
            for k, v in o.items():
                here = f"{key}.{k}" if key else str(k)
                if not isinstance(k, (str, int, float, bool)) or k is None:
                    raise ConfigError("keys must be plain names", key=here, file=file)
                if str(k) in _FORBIDDEN_KEYS and not key.startswith("data.records"):
                    raise ConfigError(
                        f"'{k}' is not allowed in a scenario file (it could run code or change Hydra's settings)",
                        key=here,
                        file=file,
                    )
                walk(v, here)
        elif isinstance(o, list):
            for i, v in enumerate(o):
                walk(v, f"{key}[{i}]")

    walk(body, "")
    return body


def strings(o: Any) -> Iterator[str]:
    """Every string value in a parsed config."""
    if isinstance(o, dict):
        for v in o.values():
            yield from strings(v)
    elif isinstance(o, list):
        for v in o:
            yield from strings(v)
    elif isinstance(o, str):
        yield o


def interpolated(o: Any, key: str) -> Iterator[tuple[str, str]]:
    """(dotted key, value) for every string value holding `${`, keys as OmegaConf names them."""
    if isinstance(o, dict):
        for k, v in o.items():
            yield from interpolated(v, f"{key}.{k}")
    elif isinstance(o, list):
        for i, v in enumerate(o):
            yield from interpolated(v, f"{key}[{i}]")
    elif isinstance(o, str) and "${" in o:
        yield key, o


def resolver_calls(value: str) -> tuple[list[str], str | None]:
    """The resolver calls in `value` as OmegaConf's own grammar parses it (not a text pattern: a resolver whose
    name is itself interpolated, `${oc.${x}:VAR}` or `${${x}:VAR}`, nested or concatenated, is still a resolver
    call; an escaped `\\${...}` is text), and why the value does not parse, if it does not."""
    from omegaconf import grammar_parser
    from omegaconf.errors import GrammarParseError
    from omegaconf.grammar.gen.OmegaConfGrammarParser import OmegaConfGrammarParser

    try:
        tree = grammar_parser.parse(value)
    except GrammarParseError as e:
        return [], f"not a valid interpolation: {str(e).splitlines()[0][:200]}"
    calls, stack = [], [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, OmegaConfGrammarParser.InterpolationResolverContext):
            calls.append(node.getText())
        stack.extend(getattr(node, "children", None) or [])  # a rule's children; a token has none
    return calls, None


def quote(value: str) -> str:
    """A value as a quoted string in Hydra's override grammar (paths with commas, brackets or = in them)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def name_override(name: Any) -> str:
    """The override that gives Hydra's run-directory pattern the scenario's name. Hydra resolves interpolations
    inside a quoted override value, so only a valid name goes through; any other is replaced here, and the schema
    refuses it (naming scenario.name) before anything is written."""
    from schola.schema import NAME_PATTERN

    valid = isinstance(name, str) and re.match(NAME_PATTERN, name) is not None
    return f"++scenario.name={quote(name) if valid else 'invalid-name'}"


def check_config_dirs(dirs: list[str]) -> None:
    for d in dirs:
        p = Path(d)
        if not p.exists():
            raise ConfigError(f"--config-dir {d}: no such folder", file="command line")
        if not p.is_dir():
            raise ConfigError(f"--config-dir {d}: not a folder", file="command line")


def searchpath_override(dirs: list[str]) -> list[str]:
    if not dirs:
        return []
    return ["hydra.searchpath=[" + ",".join(quote(f"file://{Path(d).resolve()}") for d in dirs) + "]"]


def builtin_options(group: str) -> list[str]:
    return sorted(p.name[:-5] for p in files("schola.conf").joinpath(group).iterdir() if p.name.endswith(".yaml"))


def dir_options(dirs: list[str], group: str) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for d in dirs:
        folder = Path(d) / group
        if folder.is_dir():
            for p in sorted(folder.iterdir()):
                if p.suffix in YAML_SUFFIXES:
                    found.setdefault(p.stem, p)
    return found


def default_scenario() -> str:
    """The scenario conf/config.yaml's defaults list chooses."""
    config = yaml.safe_load(files("schola.conf").joinpath("config.yaml").read_text(encoding="utf-8"))
    for entry in config.get("defaults", []):
        if isinstance(entry, dict) and "scenario" in entry:
            return str(entry["scenario"])
    return "lbt"


def _is_scenario_key(override: str) -> bool:
    key = override.partition("=")[0].lstrip("+~")
    return key.startswith("scenario.")


class Composition:
    """What one composition is made of. The chosen scenario's YAML is read and parsed once, here (a user's file,
    or one from a --config-dir folder, is checked like any scenario file); Hydra composes everything else (root
    config, backend, run keys, sweeps, launchers) and the `scenario.*` overrides are applied to the parsed
    scenario as Hydra would, so a scenario of 10,000 roles costs milliseconds, not OmegaConf's seconds.

    Args:
        overrides: command-line overrides (`scenario=NAME` chooses the scenario).
        config_dirs: --config-dir folders.
        scenario_file: a scenario YAML path given directly.
    """

    def __init__(self, overrides: list[str], config_dirs: list[str], scenario_file: str | None = None) -> None:
        check_config_dirs(config_dirs)
        self.dirs = list(config_dirs)
        overrides = [o for o in overrides if o != f"scenario={PARSED}"]  # a sweep job's, from hydra_overrides
        choices = [o for o in overrides if o.partition("=")[0].lstrip("+") == "scenario"]
        self.scenario_overrides = [o for o in overrides if _is_scenario_key(o)]
        self.other_overrides = [o for o in overrides if o not in choices and o not in self.scenario_overrides]
        name = choices[-1].partition("=")[2] if choices else None
        if scenario_file is not None:
            path = Path(scenario_file).expanduser().resolve()
            if not path.exists():
                raise ConfigError(f"no such scenario file: {scenario_file}")
            self.path, self.trusted, self.option = path, False, path.stem
        else:
            self.option = name or default_scenario()
            self.path, self.trusted = self._find(self.option)
        text = read_yaml_text(self.path)
        body = load_yaml(text, file=str(self.path)) if self.trusted else check_scenario_text(text, file=str(self.path))
        if not isinstance(body, dict):
            raise ConfigError("expected a mapping (name:, roles:, graph:, ...)", file=str(self.path))
        self.body: dict[str, Any] = body

    def _find(self, name: str) -> tuple[Path, bool]:
        """The YAML of scenario option `name`: a --config-dir folder's, the package's, or a plugin's own."""
        user = dir_options(self.dirs, "scenario")
        if name in user:
            return user[name].resolve(), False
        builtin = files("schola.conf").joinpath("scenario", f"{name}.yaml")
        if builtin.is_file():
            return Path(str(builtin)), True
        from schola import plugins

        if name in plugins.scenarios.names():
            try:
                config = getattr(plugins.scenarios.get(name), "config", None)
            except ConfigError:
                config = None
            if config and Path(str(config)).is_file():
                return Path(str(config)).resolve(), True
            raise ConfigError(
                f"scenario {name} ships no YAML; write one with `kind: {name}` (with roles: and graph:) and run "
                "that file",
                key="scenario",
            )
        raise ConfigError(
            f"Could not find scenario '{name}'; available scenarios: {', '.join(self.scenario_options())}",
            key="scenario",
        )

    def scenario_options(self) -> list[str]:
        """Every scenario this composition can choose: built-in, from config folders, from plugins."""
        from schola import plugins

        return sorted(
            set(builtin_options("scenario")) | set(dir_options(self.dirs, "scenario")) | set(plugins.scenarios.names())
        )

    def hydra_overrides(self, *, sweep: bool = False) -> list[str]:
        """What Hydra composes: everything but the scenario (a sweep also gets the scenario overrides, forced, so
        its sweeper can expand `scenario.variant=a,b`; each job applies them again to the parsed scenario)."""
        forced = ["++" + o.lstrip("+") for o in self.scenario_overrides if not o.startswith("~")] if sweep else []
        return [*self.other_overrides, parsed_scenario(), *forced, *searchpath_override(self.dirs)]

    def scenario(self, overrides: list[str] | None = None) -> dict[str, Any]:
        """The scenario config: the parsed file, its selected variant merged over it, then the `scenario.*`
        overrides (so the command line wins over a variant)."""
        chosen = self.scenario_overrides if overrides is None else [o for o in overrides if _is_scenario_key(o)]
        scenario = copy.deepcopy(self.body)
        for o in chosen:
            apply_override(scenario, o)
        variants, variant = scenario.get("variants"), scenario.get("variant")
        # a variant that is not a name (`variant: [a]`) selects nothing; the schema then names the key
        if isinstance(variants, dict) and isinstance(variant, str) and isinstance(variants.get(variant), dict):
            scenario = merge(scenario, variants[scenario["variant"]])
            for o in chosen:  # again, over the variant; a key added with '+' may now be the variant's
                apply_override(scenario, o, again=True)
        if not self.trusted:
            scenario["source"] = str(self.path)
        if "${" in json.dumps(scenario, default=str):  # references between scenario keys: OmegaConf resolves them
            scenario = self._resolve(scenario)
        return scenario

    def _resolve(self, scenario: dict[str, Any]) -> dict[str, Any]:
        """Interpolations between scenario keys resolved; a resolver call anywhere is refused first (see
        `resolver_calls`), so resolution reads nothing but the scenario. Errors name the file and key a value
        came from (the command line for a value that is not in the file)."""
        from omegaconf import OmegaConf
        from omegaconf.errors import OmegaConfBaseException

        in_file = set(strings(self.body))

        def where(value: str) -> str:
            return str(self.path) if value in in_file else "command line"

        for key, value in interpolated(scenario, "scenario"):
            calls, problem = resolver_calls(value)
            if problem:
                raise ConfigError(f"{problem} (write \\${{ for a literal ${{)", key=key, file=where(value))
            if calls:
                raise ConfigError(
                    f"{calls[0]!r} calls a resolver; a scenario may refer to its own keys (${{scenario.params.x}}) "
                    "but call no resolver: it must not read the environment or anything outside itself",
                    key=key,
                    file=where(value),
                )
        try:
            resolved: Any = OmegaConf.to_container(OmegaConf.create({"scenario": scenario}), resolve=True)
        except OmegaConfBaseException as e:
            bad = str(getattr(e, "full_key", "") or "") or None
            text = str(e).strip().splitlines()[0][:300]
            found = next((v for k, v in interpolated(scenario, "scenario") if k == bad), None)
            raise ConfigError(
                f"cannot resolve: {text}", key=bad, file=where(found) if found else str(self.path)
            ) from None
        except RecursionError:  # an interpolation that leads back to itself, or a value nested hundreds deep
            raise ConfigError(
                "an interpolation refers to itself (or is nested too deeply)", file=str(self.path)
            ) from None
        return dict(resolved["scenario"])

    @property
    def file(self) -> str:
        return str(self.path)

    def __enter__(self) -> Composition:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


PARSED = "_parsed"  # the scenario option Hydra composes: an empty node; Composition brings the scenario itself


def parsed_scenario() -> str:
    """The override that has Hydra compose an empty scenario (registered in Hydra's ConfigStore), since the
    composition parses the scenario itself. `~scenario` left the defaults list's scenario (lbt) in place until after
    Hydra had read its file into OmegaConf for its `# @package` header: 9 KB parsed twice, 40% of compose's CPU."""
    _store_parsed()
    return f"scenario={PARSED}"


@functools.cache
def _store_parsed() -> None:
    """The empty scenario node, in Hydra's ConfigStore once a process (each composition and sweep job asks)."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(group="scenario", name=PARSED, node={}, provider="schola")


def merge(base: Any, over: Any) -> Any:
    """`over` deep-merged onto `base`: mappings merge key by key, everything else (lists included) is replaced."""
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            out[k] = merge(base.get(k), v) if k in base else copy.deepcopy(v)
        return out
    return copy.deepcopy(over)


def parse_overrides(overrides: list[str]) -> list[Any]:
    """Overrides parsed by Hydra's own grammar (every override Schola reads is parsed here); a bad one is a
    ConfigError naming the command line."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    with hydra_errors():
        return list(OverridesParser.create().parse_overrides(overrides))


def apply_override(scenario: dict[str, Any], override: str, *, again: bool = False) -> None:
    """One `scenario.*` override applied to a parsed scenario as Hydra applies it to a config: `key=value` sets
    an existing key, `+key=value` adds a new one, `++key=value` sets or adds, `~key` deletes; list items by index
    (`scenario.roles.students.0.persona=...`); values in Hydra's grammar."""
    parsed = parse_overrides([override])[0]
    if parsed.is_sweep_override():
        raise ConfigError(f"'{override}' sweeps several values: add -m to run them all", file="command line")
    key = parsed.key_or_group
    parts = key.split(".")[1:]
    if not parts:
        raise ConfigError(f"'{override}': name a scenario key (scenario.data.path=...)", file="command line")
    parent: Any = scenario
    for i, part in enumerate(parts[:-1]):
        here = ".".join(["scenario", *parts[: i + 1]])
        if isinstance(parent, list) and part.isdigit() and int(part) < len(parent):
            parent = parent[int(part)]
        elif isinstance(parent, dict) and part in parent and isinstance(parent[part], (dict, list)):
            parent = parent[part]
        elif isinstance(parent, dict) and (parsed.is_add() or parsed.is_force_add()) and parent.get(part) is None:
            parent[part] = {}
            parent = parent[part]
        else:
            raise ConfigError(f"the scenario has no '{here}' to set a key under", key=key, file="command line")
    last = parts[-1]
    if isinstance(parent, list):
        if not last.isdigit() or int(last) >= len(parent) or parsed.is_delete():
            raise ConfigError(f"'{key}': no such list item", key=key, file="command line")
        parent[int(last)] = parsed.value()
        return
    if parsed.is_delete():
        if last not in parent:
            raise ConfigError(f"cannot delete '{key}': the scenario has no such key", key=key, file="command line")
        del parent[last]
    elif parsed.is_force_add():
        parent[last] = parsed.value()
    elif parsed.is_add():
        if last in parent and not again:
            raise ConfigError(
                f"cannot add '{key}': it is there already (set it without '+')", key=key, file="command line"
            )
        parent[last] = parsed.value()
    else:
        if last not in parent:
            from schola.schema import difflib_near

            near = difflib_near(last, [str(k) for k in parent])
            hint = f"did you mean {key.rsplit('.', 1)[0]}.{near}?" if near else f"a new key needs '+{key}=value'"
            raise ConfigError(f"unknown key {key}; {hint}", key=key, file="command line")
        parent[last] = parsed.value()


def compose(composition: Composition) -> tuple[dict[str, Any], dict[str, Any], str]:
    """Compose the config as Hydra would for a run; returns (resolved config, group choices, run directory)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from omegaconf import OmegaConf, open_dict

    scenario = composition.scenario()
    # the run directory's pattern reads ${scenario.name}: Hydra sees the name, nothing else of the scenario
    name = scenario.get("name")
    with hydra_errors(), initialize_config_module("schola.conf", version_base=None):
        overrides = [*composition.hydra_overrides(), name_override(name)]
        cfg = hydra_compose("config", overrides=overrides, return_hydra_config=True)
        choices: dict[str, Any] = OmegaConf.to_container(cfg.hydra.runtime.choices)  # type: ignore[assignment]
        run_dir = str(cfg.hydra.run.dir)
        with open_dict(cfg):
            del cfg["hydra"]
        raw: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    del raw["scenario"]  # Hydra's empty one, where the defaults list puts it: the scenario comes last, as it did
    raw["scenario"] = scenario
    return raw, {**choices, "scenario": composition.option}, run_dir


class hydra_errors:
    """Turn Hydra's and OmegaConf's errors into ConfigErrors with a message a user can act on."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, et: type | None, e: BaseException | None, tb: Any) -> None:
        if e is None or isinstance(e, ConfigError):
            return
        from hydra.errors import HydraException, MissingConfigException, OverrideParseException
        from omegaconf.errors import OmegaConfBaseException

        if isinstance(e, MissingConfigException):
            group = "backend" if "backend" in str(e) else None
            options = builtin_options(group) if group else []
            hint = f"; available {group}s: {', '.join(options)}" if options else ""
            raise ConfigError(f"{str(e).splitlines()[0]}{hint}", key=group) from None
        if isinstance(e, OverrideParseException):
            raise ConfigError(f"bad override: {str(e).splitlines()[0]}", file="command line") from None
        if isinstance(e, (HydraException, OmegaConfBaseException)):
            cause = e.__cause__ or e.__context__
            msg = (str(e).strip() or f"{type(cause).__name__}: {cause}").splitlines()
            text = " ".join(m.strip() for m in msg if m.strip() and not m.startswith("    "))[:400]
            missing = re.search(r"Could not override '([^']+)'", text)
            key: str | None = getattr(e, "full_key", None) or (missing.group(1) if missing else None)
            if key and (("Key '" in text and "is not in struct" in text) or missing):
                from schola.schema import suggest_key

                raise ConfigError(suggest_key(str(key)), key=key, file="command line") from None
            raise ConfigError(text, key=key or None, file="command line") from None
        if isinstance(e, yaml.YAMLError):
            raise ConfigError(f"malformed YAML: {e}") from None
        if isinstance(e, UnicodeDecodeError):
            raise ConfigError(f"a config file is not UTF-8 ({e.reason})") from None
        if isinstance(e, RecursionError):  # Hydra's parser recurses once per level of `{a: {a: ...}}`
            raise ConfigError("a value nested too deeply (hundreds of levels); refused", file="command line") from None
        if isinstance(e, ValueError) and "Config group override" in str(e):  # `backend=null`, `scenario=7`
            raise ConfigError(
                f"bad override: {e} (a config group takes a name: backend=scripted)", file="command line"
            ) from None
