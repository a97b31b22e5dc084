"""Which project a pytest run belongs to, and whether domain-eval is switched on in it.

**The project's configuration.** pytest finds its ini file from the common ancestor of the
paths given, so ``pytest ../elsewhere/cases --model v3`` run from a project's root ignores
that project's ``pytest.ini``. domain-eval settings are the project's, not the case folder's:
when pytest loaded no ini file, the first one found from the *invocation* directory upwards
(``pytest.ini``, ``pyproject.toml`` with ``[tool.pytest.ini_options]``, ``tox.ini`` with
``[pytest]``, ``setup.cfg`` with ``[tool:pytest]``, pytest's own order) supplies the
``domain_eval_*`` values. Relative paths in them (models, results, baselines) resolve
against that file's folder; with no file at all, against the invocation directory, never an
unrelated ancestor of the case folder.

**Opt-in.** The plugin is installed into environments that have nothing to do with it, so it
does nothing (collects nothing, changes no option) unless the run asks for it:

* ``--domain-eval`` or ``--model`` on the command line: the paths given (or ``testpaths``)
  are case folders; or
* the ini names case folders (``domain_eval_cases = cases``) and the run's paths reach them
  (``pytest``, ``pytest cases``, ``pytest .``, ``pytest cases/short.yaml``); ``pytest tests``
  in the same project leaves the plugin inert.

Only YAML files under the active case folders are collected.
"""
from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ProjectConfig", "find_project", "case_roots"]

_PREFIX = "domain_eval_"


@dataclass
class ProjectConfig:
    """``root``: folder relative paths resolve against; ``path``: the config file (if any);
    ``values``: ``domain_eval_*`` ini values read here because pytest did not load that file
    (None when pytest's own ini is the project's)."""

    root: Path
    path: Path | None = None
    values: dict[str, Any] | None = None

    def getini(self, config: Any, name: str, kind: str = "string") -> Any:
        """An ini value: pytest's, or this file's when pytest did not load it."""
        if self.values is None or name not in self.values:
            return config.getini(name)
        raw = self.values[name]
        if kind == "paths":
            items = raw if isinstance(raw, list) else shlex.split(str(raw))
            return [(self.root / str(p)) for p in items]
        if kind == "args":
            return [str(x) for x in raw] if isinstance(raw, list) else shlex.split(str(raw))
        return str(raw) if not isinstance(raw, list) else " ".join(map(str, raw))


def _read(path: Path) -> dict[str, Any] | None:
    """The pytest section of a config file, or None when it has none (pytest's rules)."""
    try:
        if path.name == "pyproject.toml":
            import tomllib

            section = tomllib.loads(path.read_text(encoding="utf-8")).get("tool", {}).get("pytest", {}).get("ini_options")
            return dict(section) if isinstance(section, dict) else None
        import iniconfig

        ini = iniconfig.IniConfig(str(path))
        name = "tool:pytest" if path.name == "setup.cfg" else "pytest"
        if name in ini:
            return {k: v for k, v in ini[name].items()}
        return {} if path.name == "pytest.ini" else None  # an empty pytest.ini still counts
    except Exception:  # noqa: BLE001 - a broken unrelated file is pytest's business, not ours
        return None


def find_project(config: Any) -> ProjectConfig:
    """The project's configuration for this run (module docstring)."""
    if config.inipath is not None:
        return ProjectConfig(root=Path(config.inipath).parent, path=Path(config.inipath))
    start = Path(str(config.invocation_params.dir)).resolve()
    for folder in (start, *start.parents):
        for name in ("pytest.ini", ".pytest.ini", "pyproject.toml", "tox.ini", "setup.cfg"):
            path = folder / name
            if path.is_file():
                section = _read(path)
                if section is not None:
                    values = {k: v for k, v in section.items() if k.startswith(_PREFIX)}
                    return ProjectConfig(root=folder, path=path, values=values)
    return ProjectConfig(root=start)


def case_roots(config: Any, project: ProjectConfig, explicit: bool) -> list[Path]:
    """The active case folders (empty: the plugin stays inert). See the module docstring."""
    ini_roots = [Path(p).resolve() for p in project.getini(config, "domain_eval_cases", "paths")]
    invocation = Path(str(config.invocation_params.dir))
    roots: list[Path] = []
    for arg in config.args:
        path = (invocation / str(arg).split("::")[0]).resolve()
        inside = [c for c in ini_roots if c.is_relative_to(path)]
        if inside:  # the path holds case folders: those, not everything under it
            roots.extend(inside)
        elif any(path.is_relative_to(c) for c in ini_roots):  # part of a case folder
            roots.append(path)
        elif explicit:  # a folder named on the command line with --model / --domain-eval
            roots.append(path)
    return list(dict.fromkeys(roots))
