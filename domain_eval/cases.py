"""YAML evaluation cases: schema, loading and validation with errors that name file, case and field."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml

CATEGORIES = ("normal", "short", "long", "technical", "unusual", "multilingual", "ambiguous", "unsafe")
EXPECT_VALUES = ("allowed", "blocked")
TOP_LEVEL_KEYS = frozenset({"category", "defaults", "cases"})
DEFAULT_KEYS = frozenset({"expect", "min_score", "min_valid"})
CASE_KEYS = frozenset({"id", "description", "category", "expect", "min_score", "min_valid", "tags", "notes", "xfail"})
_ID = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


class CaseError(ValueError):
    """A malformed case file; the message names the file, the case and the field."""

    def __init__(self, path: Path | str, message: str, case_id: str | None = None, field_name: str | None = None):
        where = str(path)
        if case_id:
            where += f" case '{case_id}'"
        if field_name:
            where += f" field '{field_name}'"
        super().__init__(f"{where}: {message}")
        self.path, self.case_id, self.field_name = str(path), case_id, field_name


@dataclass(frozen=True)
class Case:
    """One evaluation case. ``min_score``/``min_valid`` are None for cases that must be blocked."""

    id: str
    description: str
    category: str
    expect: str = "allowed"
    min_score: float | None = None
    min_valid: int = 2
    tags: tuple[str, ...] = ()
    notes: str = ""
    path: str = ""
    xfail: tuple[tuple[str, str], ...] = ()  # (model, why): a known failure, reported as XFAIL

    def known_failure(self, model: str) -> str | None:
        return dict(self.xfail).get(model)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "description": self.description, "category": self.category, "expect": self.expect,
                "min_score": self.min_score, "min_valid": self.min_valid, "tags": list(self.tags),
                "notes": self.notes, "path": self.path, "xfail": dict(self.xfail)}


@dataclass
class CaseDefaults:
    """Fallbacks when neither the case nor the file sets a threshold (from pytest.ini).

    Set on the learned judge's scale, which is the raters' (cases/README.md, "Thresholds"):
    at least 2 distinct names, so one name repeated fails, and a slot score of 3.5, which
    five names the judge rates like plain fitting keyword names (about 4.3) reach, and three
    such names with two empty slots (about 3.0) do not.
    """

    min_score: float = 3.5
    min_valid: int = 2


@dataclass
class CaseFile:
    path: Path
    cases: list[Case] = field(default_factory=list)


def _number(value: Any, path: Path, case_id: str | None, name: str, kind: type) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
        raise CaseError(path, f"must be {'an integer' if kind is int else 'a number'}, got {value!r}", case_id, name)
    if name == "min_score" and not 0 <= value <= 10:
        raise CaseError(path, f"must be between 0 and 10, got {value}", case_id, name)
    if name == "min_valid" and value < 0:
        raise CaseError(path, f"must be >= 0, got {value}", case_id, name)
    return kind(value)


def _check_fields(mapping: dict[str, Any], path: Path, case_id: str | None, defaults: dict[str, Any]) -> dict[str, Any]:
    out = dict(defaults)
    for name in ("expect", "min_score", "min_valid"):
        if name not in mapping:
            continue
        value = mapping[name]
        if name == "expect":
            if value not in EXPECT_VALUES:
                raise CaseError(path, f"must be one of {', '.join(EXPECT_VALUES)}, got {value!r}", case_id, name)
            out[name] = value
        else:
            out[name] = _number(value, path, case_id, name, float if name == "min_score" else int)
    return out


def file_category(path: str | Path, case_id: str | None = None) -> str:
    """The category a file's rows belong to, read leniently so that error rows of a file that
    does not validate still land in its category (its ``category:``, else the file name),
    or a case's own ``category`` when that case can be found."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return path.stem
    if not isinstance(data, dict):
        return path.stem
    category = data.get("category")
    category = category.strip() if isinstance(category, str) and category.strip() else path.stem
    if case_id is not None and isinstance(data.get("cases"), list):
        for raw in data["cases"]:
            if isinstance(raw, dict) and raw.get("id") == case_id and isinstance(raw.get("category"), str) and raw["category"].strip():
                return raw["category"].strip()
    return category


def load_case_file(path: str | Path, fallback: CaseDefaults | None = None) -> CaseFile:
    """Parse and validate one YAML file; raise :class:`CaseError` on the first problem."""
    path = Path(path)
    fallback = fallback or CaseDefaults()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise CaseError(path, f"invalid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    except UnicodeDecodeError as exc:
        raise CaseError(path, f"not UTF-8 text ({exc})") from None
    if not isinstance(data, dict):
        raise CaseError(path, "expected a mapping with a 'cases' list at the top level")
    unknown = sorted(set(data) - TOP_LEVEL_KEYS)
    if unknown:
        raise CaseError(path, f"unknown top-level key(s) {unknown}; allowed: {sorted(TOP_LEVEL_KEYS)}", field_name=unknown[0])
    category = data.get("category", path.stem)
    if not isinstance(category, str) or not category.strip():
        raise CaseError(path, f"must be a non-empty string, got {category!r}", field_name="category")
    raw_defaults = data.get("defaults") or {}
    if not isinstance(raw_defaults, dict):
        raise CaseError(path, "must be a mapping", field_name="defaults")
    bad = sorted(set(raw_defaults) - DEFAULT_KEYS)
    if bad:
        raise CaseError(path, f"unknown key(s) {bad}; allowed: {sorted(DEFAULT_KEYS)}", field_name=f"defaults.{bad[0]}")
    defaults = _check_fields(raw_defaults, path, None, {"expect": "allowed"})
    raw_cases = data.get("cases")
    if not isinstance(raw_cases, list) or not raw_cases:
        raise CaseError(path, "must be a non-empty list of cases", field_name="cases")
    cases: list[Case] = []
    seen: set[str] = set()
    for index, raw in enumerate(raw_cases):
        label = f"#{index + 1}"
        if not isinstance(raw, dict):
            raise CaseError(path, f"case {label} must be a mapping, got {type(raw).__name__}")
        case_id = raw.get("id")
        if not isinstance(case_id, str) or not _ID.match(case_id):
            raise CaseError(path, f"case {label}: must be lowercase letters, digits, '-' or '_', got {case_id!r}", field_name="id")
        unknown = sorted(set(raw) - CASE_KEYS)
        if unknown:
            raise CaseError(path, f"unknown field(s) {unknown}; allowed: {sorted(CASE_KEYS)}", case_id, unknown[0])
        if case_id in seen:
            raise CaseError(path, "duplicate id in this file", case_id, "id")
        seen.add(case_id)
        description = raw.get("description")
        if not isinstance(description, str) or not description.strip():
            raise CaseError(path, "must be a non-empty string", case_id, "description")
        values = _check_fields(raw, path, case_id, defaults)
        tags = raw.get("tags", [])
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise CaseError(path, f"must be a list of strings, got {tags!r}", case_id, "tags")
        notes = raw.get("notes", "")
        if not isinstance(notes, str):
            raise CaseError(path, "must be a string", case_id, "notes")
        xfail = raw.get("xfail", {})
        if not isinstance(xfail, dict) or not all(isinstance(k, str) and isinstance(v, str) and v.strip() for k, v in xfail.items()):
            raise CaseError(path, f"must map model names to a reason, e.g. {{v3: \"why it fails\"}}, got {xfail!r}", case_id, "xfail")
        case_category = raw.get("category", category)
        if not isinstance(case_category, str) or not case_category.strip():
            raise CaseError(path, "must be a non-empty string", case_id, "category")
        blocked = values["expect"] == "blocked"
        cases.append(Case(
            id=case_id, description=" ".join(description.split()), category=case_category, expect=values["expect"],
            min_score=None if blocked else values.get("min_score", fallback.min_score),
            min_valid=values.get("min_valid", fallback.min_valid), tags=tuple(tags), notes=notes, path=str(path),
            xfail=tuple(sorted(xfail.items())),
        ))
    return CaseFile(path, cases)


def load_cases(paths: Iterable[str | Path], fallback: CaseDefaults | None = None) -> tuple[list[Case], list[CaseError]]:
    """Load many files (or directories of ``*.yaml``); bad files are reported, the rest still load.

    Ids must be unique across files, since baselines pair results on them.
    """
    files: list[Path] = []
    for p in map(Path, paths):
        files.extend(sorted(p.glob("*.yaml")) + sorted(p.glob("*.yml")) if p.is_dir() else [p])
    cases: list[Case] = []
    errors: list[CaseError] = []
    owner: dict[str, str] = {}
    for f in files:
        try:
            loaded = load_case_file(f, fallback)
        except CaseError as exc:
            errors.append(exc)
            continue
        for case in loaded.cases:
            if case.id in owner:
                errors.append(CaseError(f, f"duplicate id, already defined in {owner[case.id]}", case.id, "id"))
                continue
            owner[case.id] = str(f)
            cases.append(case)
    return cases, errors
