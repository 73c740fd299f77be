"""Hydra glue: a user's scenario file made a `scenario` option (and checked: a shared scenario file can set only
scenario keys — no Hydra settings, no Python targets, no environment reads), config folders, the scenario YAML a
plugin ships, and composition with Hydra's errors turned into ConfigErrors."""

from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml

from schola.errors import ConfigError

MAX_SCENARIO_BYTES = 8 * 1024 * 1024  # larger data belongs in scenario.data.path
MAX_YAML_NODES = 2_000_000  # nodes after alias expansion: refuses "billion laughs" files in well under a second
YAML_SUFFIXES = (".yaml", ".yml")
_PACKAGE = re.compile(r"^\s*#\s*@package\s+(\S+)", re.M)
_RESOLVER = re.compile(r"\$\{\s*[\w.]+\s*:")  # ${oc.env:X}, ${oc.decode:...}: a resolver call reads outside the file
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
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as e:
        raise ConfigError(f"malformed YAML: {e}", file=file) from None


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
        elif isinstance(o, str) and _RESOLVER.search(o):
            raise ConfigError(
                "interpolations that call a resolver (${oc.env:...} and the like) are not allowed in a scenario "
                "file: it must not read the environment",
                key=key,
                file=file,
            )

    walk(body, "")
    return body


class ScenarioFile:
    """A scenario YAML outside the package made a `scenario` option: a temporary config folder holds a link to
    it under a name of its own (so a file named like a built-in still runs the user's file), and both that
    folder and the file's own join Hydra's search path."""

    def __init__(self, path: str) -> None:
        self.path = Path(path).expanduser().resolve()
        if not self.path.exists():
            raise ConfigError(f"no such scenario file: {path}")
        check_scenario_text(read_yaml_text(self.path), file=str(self.path))
        self.option = "file_" + hashlib.sha256(str(self.path).encode()).hexdigest()[:12]
        self.tmp = Path(tempfile.mkdtemp(prefix="schola-conf-"))
        (self.tmp / "scenario").mkdir()
        (self.tmp / "scenario" / f"{self.option}.yaml").symlink_to(self.path)

    def overrides(self) -> list[str]:
        return [f"scenario={self.option}", f"++scenario.source={quote(str(self.path))}"]

    @property
    def search_paths(self) -> list[str]:
        return [str(self.tmp)]

    def cleanup(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> ScenarioFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


def quote(value: str) -> str:
    """A value as a quoted string in Hydra's override grammar (paths with commas, brackets or = in them)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


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


def choice(overrides: list[str], group: str) -> str | None:
    """The option an override list picks for a config group (`scenario=lbt`), if any."""
    for o in overrides:
        key, sep, value = o.partition("=")
        if sep and key.lstrip("+~") == group:
            return value
    return None


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


class ConfigFolders:
    """The extra config folders of one composition: the user's --config-dir folders (their scenario files are
    checked like any scenario file), a scenario file's temporary folder, and a plugin's shipped scenario."""

    def __init__(self, overrides: list[str], config_dirs: list[str], scenario_file: str | None = None) -> None:
        check_config_dirs(config_dirs)
        self.file = ScenarioFile(scenario_file) if scenario_file else None
        self.overrides = (self.file.overrides() if self.file else []) + list(overrides)
        self.dirs = list(config_dirs) + (self.file.search_paths if self.file else [])
        self._plugin_tmp: Path | None = None
        name = choice(self.overrides, "scenario")
        if name and not self.file:
            user = dir_options(config_dirs, "scenario")
            if name in user:
                check_scenario_text(read_yaml_text(user[name]), file=str(user[name]))
            elif name not in builtin_options("scenario"):
                self._plugin_config(name)

    def _plugin_config(self, name: str) -> None:
        from schola import plugins

        if name not in plugins.scenarios.names():
            return
        try:
            config = getattr(plugins.scenarios.get(name), "config", None)
        except ConfigError:
            return
        if config and Path(str(config)).is_file():
            self._plugin_tmp = Path(tempfile.mkdtemp(prefix="schola-conf-"))
            (self._plugin_tmp / "scenario").mkdir()
            (self._plugin_tmp / "scenario" / f"{name}.yaml").symlink_to(Path(str(config)).resolve())
            self.dirs.append(str(self._plugin_tmp))

    def scenario_options(self) -> list[str]:
        """Every scenario this composition can choose: built-in, from config folders, from plugins."""
        from schola import plugins

        shipped = [n for n in plugins.scenarios.names() if n not in builtin_options("scenario")]
        return sorted(set(builtin_options("scenario")) | set(dir_options(self.dirs, "scenario")) | set(shipped))

    def cleanup(self) -> None:
        if self.file:
            self.file.cleanup()
        if self._plugin_tmp:
            shutil.rmtree(self._plugin_tmp, ignore_errors=True)

    def __enter__(self) -> ConfigFolders:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


def compose(overrides: list[str], *, folders: ConfigFolders | None = None) -> tuple[dict[str, Any], dict[str, Any], str]:
    """Compose the config as Hydra would for a run; returns (resolved config, group choices, run directory)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from omegaconf import OmegaConf, open_dict

    dirs = folders.dirs if folders else []
    with hydra_errors(folders):
        with initialize_config_module("schola.conf", version_base=None):
            cfg = hydra_compose("config", overrides=overrides + searchpath_override(dirs), return_hydra_config=True)
            choices: dict[str, Any] = OmegaConf.to_container(cfg.hydra.runtime.choices)  # type: ignore[assignment]
            run_dir = str(cfg.hydra.run.dir)
            with open_dict(cfg):
                del cfg["hydra"]
            raw: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    return raw, choices, run_dir


class hydra_errors:
    """Turn Hydra's and OmegaConf's errors into ConfigErrors with a message a user can act on."""

    def __init__(self, folders: ConfigFolders | None = None) -> None:
        self.folders = folders

    def __enter__(self) -> None:
        return None

    def __exit__(self, et: type | None, e: BaseException | None, tb: Any) -> bool:
        if e is None or isinstance(e, ConfigError):
            return False
        from hydra.errors import HydraException, MissingConfigException, OverrideParseException
        from omegaconf.errors import OmegaConfBaseException

        if isinstance(e, MissingConfigException):
            group = "scenario" if "scenario" in str(e) else "backend" if "backend" in str(e) else None
            if group == "scenario" and self.folders is not None:
                options = self.folders.scenario_options()
            else:
                options = builtin_options(group) if group else []
            hint = f"; available {group}s: {', '.join(options)}" if options else ""
            raise ConfigError(f"{str(e).splitlines()[0]}{hint}", key=group) from None
        if isinstance(e, OverrideParseException):
            raise ConfigError(f"bad override: {str(e).splitlines()[0]}", file="command line") from None
        if isinstance(e, (HydraException, OmegaConfBaseException)):
            cause = e.__cause__ or e.__context__
            msg = (str(e).strip() or f"{type(cause).__name__}: {cause}").splitlines()
            key = getattr(e, "full_key", None)
            text = " ".join(m.strip() for m in msg if m.strip() and not m.startswith("    "))[:400]
            if "Key '" in text and "is not in struct" in text or "Could not override" in text:
                text += " (keys not in the config need '+key=value')"
            raise ConfigError(text, key=key or None, file="command line") from None
        if isinstance(e, yaml.YAMLError):
            raise ConfigError(f"malformed YAML: {e}") from None
        if isinstance(e, UnicodeDecodeError):
            raise ConfigError(f"a config file is not UTF-8 ({e.reason})") from None
        return False
