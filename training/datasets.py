"""Training data: the seeded template generator (v1/v2), loading/validation of the
jsonl files, and the overlap check against evaluation descriptions.

Row format, one JSON object per line (``json.dumps(..., ensure_ascii=False)``)::

    {"business_description": "...", "domain_suggestions": ["a.com", "b.io", "c.co.uk"]}

Every target domain is in the canonical form that
:func:`domain_eval.domains.normalize_domain` returns (lowercase, punycode for IDN).
The original project's template data contained invalid targets such as
``thelondon's.io``; here every candidate is normalised and only valid ones are kept.

Command line::

    python -m training.datasets --version v1 --out data/domain_dataset_v1.jsonl
    python -m training.datasets --version v2 --out data/domain_dataset_v2.jsonl --seed 2 --rows 500
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence

from domain_eval.domains import InvalidDomain, normalize_domain
from domain_eval.text import words

__all__ = [
    "Row",
    "DatasetError",
    "VERSIONS",
    "BUSINESS_TYPES",
    "ADJECTIVES",
    "CITIES",
    "TEMPLATES",
    "generate_rows",
    "generate_dataset",
    "load_dataset",
    "iter_dataset",
    "write_dataset",
    "dataset_sha256",
    "META_FIELDS",
    "meta_path_for",
    "write_meta",
    "load_meta",
    "description_tokens",
    "jaccard",
    "is_near_duplicate",
    "find_overlaps",
    "load_eval_descriptions",
    "main",
]

MIN_DOMAINS = 3
MAX_DOMAINS = 5
FIELDS = ("business_description", "domain_suggestions")


# --------------------------------------------------------------------------- rows & errors
@dataclass(frozen=True)
class Row:
    """One training example: a business description and its target domains (normalised)."""

    description: str
    domains: tuple[str, ...]

    def __post_init__(self) -> None:
        # Accept any sequence but store an immutable tuple.
        object.__setattr__(self, "domains", tuple(self.domains))

    def to_json(self) -> str:
        return json.dumps(
            {"business_description": self.description, "domain_suggestions": list(self.domains)},
            ensure_ascii=False,
        )


class DatasetError(ValueError):
    """A malformed dataset line. The message names the file, the line number and the problem."""

    def __init__(self, path: str | os.PathLike[str], line: int | None, problem: str) -> None:
        self.path = str(path)
        self.line = line
        self.problem = problem
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {problem}")


# --------------------------------------------------------------------------- vocabulary
# 20 business types: (phrase used in descriptions, domain keywords, what it does).
BUSINESS_TYPES: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("restaurant", ("eats", "dine", "kitchen", "table"), ("serves seasonal dishes", "cooks regional comfort food")),
    ("tech startup", ("tech", "labs", "app", "stack"), ("builds mobile apps", "develops cloud software")),
    ("consulting firm", ("consult", "advisory", "partners", "strategy"), ("advises small companies", "helps teams plan growth")),
    ("bakery", ("bake", "bread", "oven", "crumb"), ("bakes sourdough loaves", "makes pastries every morning")),
    ("fitness studio", ("fit", "gym", "move", "strong"), ("runs group workouts", "offers personal training")),
    ("coffee shop", ("coffee", "brew", "bean", "roast"), ("roasts its own beans", "serves espresso and cakes")),
    ("bookstore", ("books", "pages", "read", "shelf"), ("sells new and used books", "hosts author readings")),
    ("flower shop", ("flowers", "bloom", "petal", "florist"), ("arranges wedding bouquets", "delivers fresh flowers")),
    ("pet grooming salon", ("pet", "paws", "groom", "fur"), ("grooms dogs and cats", "pampers family pets")),
    ("yoga studio", ("yoga", "flow", "zen", "breathe"), ("teaches morning classes", "runs beginner courses")),
    ("law firm", ("law", "legal", "counsel", "advocate"), ("handles family law", "advises on contracts")),
    ("accounting practice", ("tax", "ledger", "books", "account"), ("prepares tax returns", "does bookkeeping for freelancers")),
    ("marketing agency", ("brand", "growth", "media", "buzz"), ("runs social media campaigns", "designs brand identities")),
    ("photography studio", ("photo", "lens", "frame", "snap"), ("takes family portraits", "covers weddings and events")),
    ("cleaning service", ("clean", "sparkle", "tidy", "fresh"), ("cleans homes and offices", "offers weekly house cleaning")),
    ("travel agency", ("travel", "trips", "voyage", "journey"), ("plans custom holidays", "books group tours")),
    ("interior design studio", ("interiors", "design", "decor", "space"), ("redesigns living spaces", "furnishes small apartments")),
    ("dental clinic", ("dental", "smile", "teeth", "dentist"), ("offers family dentistry", "does teeth whitening")),
    ("landscaping company", ("garden", "green", "yard", "landscape"), ("designs backyard gardens", "maintains city parks")),
    ("tutoring center", ("tutor", "learn", "study", "class"), ("helps students with maths", "prepares teens for exams")),
)

# 21 adjectives: (word used in descriptions, domain keyword).
ADJECTIVES: tuple[tuple[str, str], ...] = (
    ("modern", "modern"),
    ("premium", "premium"),
    ("sustainable", "sustain"),
    ("organic", "organic"),
    ("family-owned", "family"),
    ("boutique", "boutique"),
    ("eco-friendly", "eco"),
    ("innovative", "nova"),
    ("affordable", "value"),
    ("luxury", "luxe"),
    ("artisan", "artisan"),
    ("friendly", "friendly"),
    ("creative", "creative"),
    ("smart", "smart"),
    ("cozy", "cozy"),
    ("professional", "pro"),
    ("vintage", "vintage"),
    ("urban", "urban"),
    ("green", "green"),
    ("global", "global"),
    ("independent", "indie"),
)

# 22 cities: (name, domain keyword, country-code suffix that fits a local business).
CITIES: tuple[tuple[str, str, str], ...] = (
    ("London", "london", "co.uk"),
    ("Paris", "paris", "fr"),
    ("Berlin", "berlin", "de"),
    ("Tokyo", "tokyo", "jp"),
    ("New York", "nyc", "com"),
    ("Sydney", "sydney", "com.au"),
    ("Toronto", "toronto", "ca"),
    ("Amsterdam", "amsterdam", "nl"),
    ("Barcelona", "barcelona", "es"),
    ("Dubai", "dubai", "ae"),
    ("Singapore", "singapore", "sg"),
    ("Austin", "austin", "com"),
    ("Seattle", "seattle", "com"),
    ("Chicago", "chicago", "com"),
    ("Melbourne", "melbourne", "com.au"),
    ("Dublin", "dublin", "ie"),
    ("Lisbon", "lisbon", "pt"),
    ("Stockholm", "stockholm", "se"),
    ("Vancouver", "vancouver", "ca"),
    ("Cape Town", "capetown", "co.za"),
    ("Miami", "miami", "com"),
    ("Milan", "milan", "it"),
)

# Sentence templates. Fields: {a} article for the adjective, {adj}, {biz}, {city}, {does}.
TEMPLATES: tuple[str, ...] = (
    "{Adj} {biz} in {city}",
    "{A} {adj} {biz} based in {city}",
    "{A} {adj} {biz} in {city} that {does}",
    "We are {a} {adj} {biz} located in {city}",
    "{Adj} {biz} in {city} which {does}",
    "Looking for a name for {a} {adj} {biz} in {city}",
    "{A} {adj} {biz} serving customers across {city}",
    "New {adj} {biz} opening in {city}; it {does}",
)

PREFIXES = ("get", "my", "the", "go", "try", "hello", "join", "meet")
SUFFIXES = ("hub", "ly", "ify", "hq", "co", "lab", "spot", "works", "now", "base")
GENERIC_TLDS = ("com", "com", "com", "com", "co", "net")  # weighted towards .com
TECH_TLDS = ("io", "ai", "dev", "app")

# Committed seeds and sizes of the template datasets.
VERSIONS: dict[str, dict[str, int]] = {
    "v1": {"seed": 1, "rows": 100},
    "v2": {"seed": 2, "rows": 500},
}


# --------------------------------------------------------------------------- generator
def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def _acronym(*phrases: str) -> str:
    letters = [w[0] for phrase in phrases for w in re.split(r"[\s-]+", phrase.lower()) if w]
    return "".join(letters)


def _candidates(rng: random.Random, adj: tuple[str, str], biz, city: tuple[str, str, str]) -> list[str]:
    """Raw domain candidates for one description, by several naming strategies."""
    adj_word, adj_kw = adj
    biz_phrase, biz_kws, _ = biz
    city_name, city_kw, cc = city
    kw = rng.choice(biz_kws)
    kw2 = rng.choice([k for k in biz_kws if k != kw])
    tech = biz_phrase == "tech startup"
    tld = lambda: rng.choice(TECH_TLDS if tech else GENERIC_TLDS)  # noqa: E731
    strategies = [
        # keyword combination
        lambda: f"{adj_kw}{kw}.{tld()}",
        lambda: f"{kw}{city_kw}.{tld()}",
        lambda: f"{city_kw}{kw2}.{cc}",
        lambda: f"{kw}{kw2}.{tld()}",
        # acronyms
        lambda: f"{_acronym(adj_word, biz_phrase)}{city_kw}.{tld()}",
        lambda: f"{_acronym(adj_word, biz_phrase, city_name)}{kw}.{tld()}",
        # hyphenation
        lambda: f"{adj_kw}-{kw}.{tld()}",
        lambda: f"{kw}-{city_kw}.{cc}",
        # common affixes
        lambda: f"{rng.choice(PREFIXES)}{kw}.{tld()}",
        lambda: f"{kw}{rng.choice(SUFFIXES)}.{tld()}",
        lambda: f"{rng.choice(PREFIXES)}{adj_kw}{kw}.{tld()}",
        lambda: f"{city_kw}{kw}{rng.choice(SUFFIXES)}.{tld()}",
    ]
    rng.shuffle(strategies)
    return [make() for make in strategies]


def _valid_unique(candidates: Iterable[str]) -> list[str]:
    """Normalise candidates, keep valid ones, drop duplicates, keep order."""
    out: dict[str, None] = {}
    for cand in candidates:
        try:
            out.setdefault(normalize_domain(cand), None)
        except InvalidDomain:
            continue
    return list(out)


def generate_rows(n_rows: int, seed: int) -> list[Row]:
    """``n_rows`` template rows with distinct descriptions, reproducible from ``seed``.

    Uses only a private ``random.Random(seed)``; the same seed always gives the same rows.
    """
    if n_rows < 0:
        raise ValueError(f"n_rows must be >= 0, got {n_rows}")
    capacity = len(BUSINESS_TYPES) * len(ADJECTIVES) * len(CITIES) * len(TEMPLATES)
    if n_rows > capacity // 2:
        raise ValueError(f"n_rows={n_rows} is too many distinct rows for the templates (max {capacity // 2})")
    rng = random.Random(seed)
    rows: list[Row] = []
    seen: set[str] = set()
    while len(rows) < n_rows:
        biz = rng.choice(BUSINESS_TYPES)
        adj = rng.choice(ADJECTIVES)
        city = rng.choice(CITIES)
        template = rng.choice(TEMPLATES)
        does = rng.choice(biz[2])
        a = _article(adj[0])
        description = template.format(
            a=a, A=a.capitalize(), adj=adj[0], Adj=adj[0].capitalize(), biz=biz[0], city=city[0], does=does
        )
        key = " ".join(description.casefold().split())
        if key in seen:
            continue
        domains = _valid_unique(_candidates(rng, adj, biz, city))
        k = rng.randint(MIN_DOMAINS, MAX_DOMAINS)
        if len(domains) < MIN_DOMAINS:  # cannot happen with the vocabulary above, but never emit a short row
            continue
        seen.add(key)
        rows.append(Row(description, tuple(domains[:k])))
    return rows


def generate_dataset(version: str, out: str | os.PathLike[str], *, seed: int | None = None,
                     rows: int | None = None) -> list[Row]:
    """Generate template dataset ``version`` ("v1" or "v2") and write it to ``out``."""
    if version not in VERSIONS:
        raise ValueError(f"unknown version {version!r}; expected one of {sorted(VERSIONS)}")
    cfg = VERSIONS[version]
    data = generate_rows(cfg["rows"] if rows is None else rows, cfg["seed"] if seed is None else seed)
    write_dataset(data, out)
    return data


# --------------------------------------------------------------------------- load / write
def _parse_line(path: str, lineno: int, line: str) -> Row:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DatasetError(path, lineno, f"bad JSON: {exc.msg} (column {exc.colno})") from None
    if not isinstance(obj, dict):
        raise DatasetError(path, lineno, f"expected a JSON object, got {type(obj).__name__}")
    for field in FIELDS:
        if field not in obj:
            raise DatasetError(path, lineno, f"missing field {field!r}")
    extra = sorted(set(obj) - set(FIELDS))
    if extra:
        raise DatasetError(path, lineno, f"unexpected field(s) {', '.join(map(repr, extra))}")
    desc = obj["business_description"]
    if not isinstance(desc, str):
        raise DatasetError(path, lineno, f"'business_description' must be a string, got {type(desc).__name__}")
    if not desc.strip():
        raise DatasetError(path, lineno, "'business_description' is empty")
    doms = obj["domain_suggestions"]
    if not isinstance(doms, list):
        raise DatasetError(path, lineno, f"'domain_suggestions' must be a list, got {type(doms).__name__}")
    if not doms:
        raise DatasetError(path, lineno, "'domain_suggestions' is empty")
    for i, dom in enumerate(doms):
        if not isinstance(dom, str):
            raise DatasetError(path, lineno, f"domain_suggestions[{i}] must be a string, got {type(dom).__name__}")
        try:
            canonical = normalize_domain(dom)
        except InvalidDomain as exc:
            raise DatasetError(path, lineno, f"domain_suggestions[{i}] {dom!r} is invalid: {exc.reason}") from None
        if canonical != dom:
            raise DatasetError(path, lineno, f"domain_suggestions[{i}] {dom!r} is not in canonical form (expected {canonical!r})")
    if len(set(doms)) != len(doms):
        dupes = sorted({d for d in doms if doms.count(d) > 1})
        raise DatasetError(path, lineno, f"duplicate domain(s) in one row: {', '.join(dupes)}")
    return Row(desc, tuple(doms))


def iter_dataset(path: str | os.PathLike[str]) -> Iterator[Row]:
    """Yield validated rows; raise :class:`DatasetError` at the first bad line."""
    path_s = str(path)
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise DatasetError(path_s, None, "file not found") from None
    except UnicodeDecodeError as exc:
        raise DatasetError(path_s, None, f"not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    seen: dict[str, int] = {}
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            if lineno == text.count("\n") + 1:  # the empty string after the final newline
                continue
            raise DatasetError(path_s, lineno, "empty line")
        row = _parse_line(path_s, lineno, line)
        key = " ".join(row.description.casefold().split())
        if key in seen:
            raise DatasetError(path_s, lineno, f"duplicate description (first on line {seen[key]}): {row.description!r}")
        seen[key] = lineno
        yield row


def load_dataset(path: str | os.PathLike[str]) -> list[Row]:
    """All rows of a jsonl dataset, validated line by line.

    Raises :class:`DatasetError` (a ``ValueError``) naming the file, the line and the
    problem: bad JSON, a missing/unexpected field, a wrong type, an invalid or
    non-canonical domain (with :class:`~domain_eval.domains.InvalidDomain`'s reason),
    duplicate domains in a row, or a duplicate description.
    """
    return list(iter_dataset(path))


def _as_row(row: Row | Mapping[str, object]) -> Row:
    if isinstance(row, Row):
        return row
    return Row(str(row["business_description"]), tuple(row["domain_suggestions"]))  # type: ignore[arg-type]


def write_dataset(rows: Iterable[Row | Mapping[str, object]], path: str | os.PathLike[str]) -> Path:
    """Write rows as UTF-8 jsonl (``ensure_ascii=False``, ``\\n`` line ends), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = "".join(_as_row(r).to_json() + "\n" for r in rows).encode("utf-8")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; data files are world-readable like any checkout
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def dataset_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of the file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# --------------------------------------------------------------------------- side metadata
# The row format stays two fields; tags (language, category, industry) live in a side file,
# one entry per row, in row order, each repeating the description so a stale file is detected.
META_FIELDS = ("description", "lang", "category", "industry")


def meta_path_for(dataset_path: str | os.PathLike[str]) -> Path:
    """``data/domain_dataset_v3.jsonl`` -> ``data/domain_dataset_v3.meta.json``."""
    p = Path(dataset_path)
    stem = p.name[: -len(".jsonl")] if p.name.endswith(".jsonl") else p.stem
    return p.with_name(stem + ".meta.json")


def write_meta(entries: Sequence[Mapping[str, str]], path: str | os.PathLike[str], *, source: str = "") -> Path:
    """Write per-row tags (``META_FIELDS``) as pretty JSON, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({k: str(e[k]) for k in META_FIELDS}, ensure_ascii=False) for e in entries]
    head = json.dumps({"source": source, "fields": list(META_FIELDS)}, ensure_ascii=False)[:-1]
    payload = (head + ', "rows": [\n' + ",\n".join(lines) + "\n]}\n").encode("utf-8")  # one row per line
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_meta(path: str | os.PathLike[str], rows: Sequence[Row] | None = None) -> list[dict[str, str]]:
    """Per-row tags; with ``rows``, check they align with the dataset (same count, same descriptions)."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DatasetError(path, None, "file not found") from None
    except json.JSONDecodeError as exc:
        raise DatasetError(path, exc.lineno, f"bad JSON: {exc.msg}") from None
    entries = doc.get("rows") if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        raise DatasetError(path, None, "expected an object with a 'rows' list")
    for i, e in enumerate(entries):
        if not isinstance(e, dict) or any(not isinstance(e.get(k), str) for k in META_FIELDS):
            raise DatasetError(path, None, f"rows[{i}] must have string fields {', '.join(META_FIELDS)}")
    if rows is not None:
        if len(rows) != len(entries):
            raise DatasetError(path, None, f"{len(entries)} meta entries for {len(rows)} dataset rows")
        for i, (e, r) in enumerate(zip(entries, rows)):
            if e["description"] != r.description:
                raise DatasetError(path, None, f"rows[{i}] describes {e['description']!r} but dataset row {i + 1} is {r.description!r}")
    return entries


# --------------------------------------------------------------------------- overlap with evaluation
# Function words dropped before comparing descriptions (English plus the commonest of fr/de/es/it).
_OVERLAP_STOPWORDS = frozenset(
    """a an the and or of for in on at to with by from as is are be our your their its this that
    we you they it my which who based located near
    le la les un une des du de et en au aux pour
    der die das ein eine und mit für im in von
    el los las una y con para del
    il lo gli uno e di per con""".split()
)


def _light_stem(word: str) -> str:
    for suffix in ("ies", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)] + ("y" if suffix == "ies" else "")
    return word


_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f]")


def description_tokens(text: str) -> frozenset[str]:
    """Normalised token set: NFKC, casefold, words only, function words dropped, plurals folded.

    Japanese/Chinese are written without spaces, so a run containing CJK characters
    contributes its character bigrams instead of one giant "word".
    """
    out: set[str] = set()
    for w in words(text):
        if _CJK.search(w):
            out.update(w[i:i + 2] for i in range(max(1, len(w) - 1)))
        elif w not in _OVERLAP_STOPWORDS:
            out.add(_light_stem(w))
    return frozenset(out)


def jaccard(a: frozenset[str] | set[str], b: frozenset[str] | set[str]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def is_near_duplicate(a: str, b: str, threshold: float = 0.8) -> bool:
    """True when two descriptions are the same business for leakage purposes.

    Either the normalised token sets have Jaccard >= ``threshold``, or the smaller set
    (3+ tokens) is wholly contained in the larger and covers at least a quarter of it.
    The second rule catches the original project's leak: training on "quantum computing
    research" and testing on "quantum computing research laboratory" (Jaccard 0.75), and a
    short training description that is the opening of a longer evaluation one.
    """
    ta, tb = description_tokens(a), description_tokens(b)
    if " ".join(a.casefold().split()) == " ".join(b.casefold().split()):
        return True
    if not ta or not tb:
        return False
    score = jaccard(ta, tb)
    if score >= threshold:
        return True
    small, large = (ta, tb) if len(ta) <= len(tb) else (tb, ta)
    return len(small) >= 3 and small <= large and len(small) >= len(large) / 4


def find_overlaps(train: Iterable[str], evaluation: Iterable[str], threshold: float = 0.8) -> list[tuple[str, str, float]]:
    """``(train_description, eval_description, jaccard)`` for every near-duplicate pair."""
    evals = [(e, description_tokens(e)) for e in dict.fromkeys(evaluation)]
    out: list[tuple[str, str, float]] = []
    for t in dict.fromkeys(train):
        tt = description_tokens(t)
        for e, te in evals:
            if (tt & te or not tt or not te) and is_near_duplicate(t, e, threshold):
                out.append((t, e, round(jaccard(tt, te), 3)))
    return out


def load_eval_descriptions(cases_dir: str | os.PathLike[str] = "cases",
                           extra_files: Sequence[str | os.PathLike[str]] = ()) -> list[str]:
    """Descriptions of every evaluation case in ``cases_dir/*.yaml`` plus plain-text lists.

    Case files have a top-level ``cases:`` list of mappings with a ``description``. A
    missing or empty directory is fine. Text files hold one description per line;
    blank lines and lines starting with ``#`` are ignored.
    """
    out: list[str] = []
    cases = Path(cases_dir)
    if cases.is_dir():
        import yaml

        for f in sorted(list(cases.glob("*.yaml")) + list(cases.glob("*.yml"))):
            doc = yaml.safe_load(f.read_text(encoding="utf-8")) or {}
            items = doc.get("cases", []) if isinstance(doc, dict) else []
            for item in items or []:
                if isinstance(item, dict) and isinstance(item.get("description"), str):
                    out.append(item["description"])
    for extra in extra_files:
        for line in Path(extra).read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                out.append(line)
    return out


# --------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training.datasets",
        description="Generate a seeded template dataset (v1/v2) as jsonl. The same seed and row count "
        "always give a byte-identical file. v3 is hand-written / LLM-made: see training.groq_v3.",
    )
    parser.add_argument("--version", required=True, choices=sorted(VERSIONS),
                        help="which template dataset: "
                        + "; ".join(f"{v} = {c['rows']} rows, seed {c['seed']}" for v, c in VERSIONS.items()))
    parser.add_argument("--out", required=True, metavar="PATH", help="output jsonl path (written atomically)")
    parser.add_argument("--seed", type=int, default=None, metavar="N",
                        help="random seed (default: the committed seed of --version)")
    parser.add_argument("--rows", type=int, default=None, metavar="N",
                        help="number of rows (default: the committed size of --version)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        rows = generate_dataset(args.version, args.out, seed=args.seed, rows=args.rows)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {len(rows)} rows to {args.out} (sha256 {dataset_sha256(args.out)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
