"""Regenerate the v3 dataset (LLM-quality rows) through the Groq chat-completions API.

The committed ``data/domain_dataset_v3.jsonl`` was written by hand for this project;
this module is the reproducible path to a fresh one when ``GROQ_API_KEY`` is set::

    python -m training.groq_v3 --out data/domain_dataset_v3.jsonl --rows 290
    python -m training.groq_v3 --out /tmp/v3.jsonl --rows 40 --base-url http://127.0.0.1:8000

How it works:

* a *plan* of ``n_rows`` specs (category x language x industry) is drawn with
  ``random.Random(seed)``: a wide spread of industries, short/long/technical/unusual/
  ambiguous descriptions and >= 8 rows in each of fr, de, es, it and ja (for 290 rows);
* specs are sent in batches; the model answers one JSON object (``response_format``
  ``json_object``, temperature set) with one row per spec;
* every returned domain goes through :func:`domain_eval.domains.normalize_domain`:
  invalid ones are dropped, and a row left with fewer than 3 valid domains is dropped;
  unsafe rows (and unsafe domains) are dropped when ``domain_eval.safety`` is importable;
  duplicate descriptions and near-duplicates of evaluation cases (``cases/*.yaml`` and
  ``tests/data/heldout_descriptions.txt``) are dropped;
* a dropped row's spec goes back into the queue, so the output has exactly ``n_rows``
  rows or nothing is written (a :class:`GenerationError` says why);
* the dataset and its side file of tags (``<name>.meta.json``: lang/category/industry
  per row) are written atomically at the end.
"""
from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import math
import os
import random
import re
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from domain_eval.domains import InvalidDomain, normalize_domain
from training.datasets import (
    MAX_DOMAINS,
    MIN_DOMAINS,
    Row,
    description_tokens,
    is_near_duplicate,
    load_eval_descriptions,
    meta_path_for,
    write_dataset,
    write_meta,
)

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_OUT",
    "INDUSTRIES",
    "TECH_INDUSTRIES",
    "CATEGORY_SHARES",
    "Spec",
    "GenerationStats",
    "V3Result",
    "MissingAPIKeyError",
    "GenerationError",
    "plan_specs",
    "build_messages",
    "parse_response",
    "generate_v3",
    "main",
]

DEFAULT_MODEL = "openai/gpt-oss-120b"
REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "data" / "domain_dataset_v3.jsonl"

INDUSTRIES: tuple[str, ...] = (
    "bakery", "coffee roastery", "restaurant", "food truck", "catering", "grocery", "fitness studio",
    "yoga studio", "dental clinic", "veterinary care", "pet grooming", "childcare", "tutoring",
    "language school", "law practice", "accounting", "management consulting", "marketing agency",
    "real estate", "architecture", "interior design", "construction", "plumbing", "electrical services",
    "landscaping", "cleaning services", "removals", "auto repair", "bicycle shop", "travel agency",
    "boutique hotel", "photography", "music school", "video production", "publishing", "fashion label",
    "jewellery", "skincare", "hair salon", "florist", "furniture making", "ceramics", "nonprofit",
    "event planning", "video games", "sports coaching", "tailoring", "bookshop", "toy shop",
    "elder care", "recruitment", "insurance", "translation", "coworking", "locksmith", "beekeeping",
    "farming", "renewable energy", "logistics", "printing", "optician", "physiotherapy",
    "stationery", "tea shop", "chocolate maker", "bridal wear", "garden centre", "art gallery",
)
TECH_INDUSTRIES: tuple[str, ...] = (
    "cloud infrastructure", "databases", "cybersecurity", "machine learning", "developer tools",
    "observability", "robotics", "drones", "biotech", "bioinformatics", "fintech", "healthtech",
    "edtech", "geospatial analytics", "semiconductors", "IoT sensors", "space tech", "legal tech",
    "speech technology", "networking", "3D printing", "energy storage", "data engineering",
)
LANGUAGES = {"en": "English", "fr": "French", "de": "German", "es": "Spanish", "it": "Italian",
             "ja": "Japanese (in Japanese script)"}
LOCAL_TLDS = {"fr": ".fr", "de": ".de", "es": ".es", "it": ".it", "ja": ".jp or .co.jp"}
STYLE_HINTS = {
    "normal": "an ordinary one-sentence description (8-20 words), sometimes naming a town or city",
    "short": "a very short description of 2-4 words, like a search query",
    "long": "a long, detailed description of 40-80 words, written by the owner",
    "technical": "a precise technical product or service description using domain jargon",
    "unusual": "a quirky, niche or surprising (but legal and harmless) business",
    "ambiguous": "a vague, buzzwordy description that could fit several kinds of business",
    "multilingual": "a natural one-sentence description written entirely in the requested language",
}
# (category, language, share of rows). Shares sum to 1.
CATEGORY_SHARES: tuple[tuple[str, str, float], ...] = (
    ("normal", "en", 0.36), ("short", "en", 0.12), ("long", "en", 0.09), ("technical", "en", 0.10),
    ("unusual", "en", 0.08), ("ambiguous", "en", 0.075),
    ("multilingual", "fr", 0.035), ("multilingual", "de", 0.035), ("multilingual", "es", 0.035),
    ("multilingual", "it", 0.035), ("multilingual", "ja", 0.035),
)

SYSTEM_PROMPT = """You write training data for a model that suggests domain names for businesses.
For every requested spec, invent a business and write:
- "business_description": a description in the requested style and language;
- "domain_suggestions": 3 to 5 distinct domain names for it.
Domain rules: lowercase, ASCII letters/digits/hyphens only, no leading/trailing hyphen, one name
before the suffix (no sub-domains), a real public suffix. Prefer brandable names: invented words,
blends, metaphors, short evocative phrases, not only keyword concatenations. Use .com mostly;
.io/.ai/.dev/.app fit tech; a country suffix (.fr, .de, .es, .it, .jp, .co.uk) fits a local
business in that country.
Never write anything sexual, gambling, drugs, weapons, hate, violence, scams or other unsafe
content. Every description must be different.
Reply with one JSON object only: {"rows": [{"business_description": "...",
"domain_suggestions": ["...", "..."], "lang": "<code>", "category": "<category>",
"industry": "<industry>"}]}, one row per spec, in the order given."""


class MissingAPIKeyError(RuntimeError):
    """``GROQ_API_KEY`` is not set."""


class GenerationError(RuntimeError):
    """Generation could not produce the requested rows; nothing was written."""


@dataclasses.dataclass(frozen=True)
class Spec:
    category: str
    lang: str
    industry: str

    def line(self, n: int) -> str:
        language = LANGUAGES.get(self.lang, self.lang)
        tld = f"; a local suffix such as {LOCAL_TLDS[self.lang]} fits" if self.lang in LOCAL_TLDS else ""
        return (f"- row {n}: category={self.category}; language={self.lang}; industry={self.industry}"
                f" -- write {STYLE_HINTS[self.category]}, in {language}{tld}")


@dataclasses.dataclass
class GenerationStats:
    requests: int = 0
    api_errors: int = 0
    bad_responses: int = 0
    rows_returned: int = 0
    rows_accepted: int = 0
    invalid_domains: int = 0
    unsafe_domains: int = 0
    dropped_few_domains: int = 0
    dropped_unsafe: int = 0
    dropped_duplicate: int = 0
    dropped_eval_overlap: int = 0
    dropped_malformed: int = 0
    dropped_wrong_script: int = 0


@dataclasses.dataclass
class V3Result:
    rows: list[Row]
    meta: list[dict[str, str]]
    stats: GenerationStats
    out_path: Path
    meta_path: Path


# --------------------------------------------------------------------------- planning
def _counts(n_rows: int) -> list[tuple[str, str, int]]:
    """Largest-remainder split of ``n_rows`` over CATEGORY_SHARES."""
    raw = [(c, lang, share * n_rows) for c, lang, share in CATEGORY_SHARES]
    counts = [[c, lang, math.floor(x)] for c, lang, x in raw]
    left = n_rows - sum(c[2] for c in counts)
    order = sorted(range(len(raw)), key=lambda i: (-(raw[i][2] - math.floor(raw[i][2])), i))
    for i in order[:left]:
        counts[i][2] += 1
    return [(c, lang, k) for c, lang, k in counts]


def plan_specs(n_rows: int, seed: int = 0) -> list[Spec]:
    """``n_rows`` specs, shuffled with ``random.Random(seed)``; industries cycle so they spread widely."""
    rng = random.Random(seed)
    general = list(INDUSTRIES)
    tech = list(TECH_INDUSTRIES)
    rng.shuffle(general)
    rng.shuffle(tech)
    g = t = 0
    specs: list[Spec] = []
    for category, lang, k in _counts(n_rows):
        for _ in range(k):
            if category == "technical":
                industry, t = tech[t % len(tech)], t + 1
            elif category == "ambiguous":
                industry = "unspecified (keep it vague)"
            else:
                industry, g = general[g % len(general)], g + 1
            specs.append(Spec(category, lang, industry))
    rng.shuffle(specs)
    return specs


def build_messages(batch: Sequence[Spec]) -> list[dict[str, str]]:
    lines = "\n".join(spec.line(i) for i, spec in enumerate(batch, start=1))
    user = (f"Write {len(batch)} rows, one per spec below, in this order.\n{lines}\n"
            f"Return exactly {len(batch)} rows as the JSON object described.")
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


# --------------------------------------------------------------------------- response handling
_FENCE = re.compile(r"^\s*```(?:json)?\s*|\s*```\s*$", re.IGNORECASE)
_JAPANESE = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")


def parse_response(content: str | None) -> list[Any] | None:
    """The list of row objects in a model reply, or None when the reply is not usable JSON."""
    if not content:
        return None
    text = _FENCE.sub("", content.strip())
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        return None
    if isinstance(doc, dict):
        rows = doc.get("rows")
        if rows is None and len(doc) == 1:
            rows = next(iter(doc.values()))
    else:
        rows = doc
    return rows if isinstance(rows, list) else None


def _default_safety() -> tuple[Callable[[str], bool], Callable[[str], bool]] | None:
    """(is_unsafe_text, is_unsafe_domain) from domain_eval.safety, or None if it is not there."""
    try:
        from domain_eval import safety
    except ImportError:
        return None

    if hasattr(safety, "default_filter"):
        safety.default_filter()  # load the policy now: a broken policy fails before any API call

    def blocked(result: Any) -> bool:
        if isinstance(result, bool):
            return not result
        return bool(getattr(result, "blocked", False))

    check_text = getattr(safety, "check", None)
    check_domain = getattr(safety, "check_domain", None)
    if check_text is None:
        return None
    return (lambda s: blocked(check_text(s))), (lambda d: blocked(check_domain(d)) if check_domain else False)


def _clean_row(item: Any, spec: Spec, stats: GenerationStats, safety) -> tuple[str, list[str]] | None:
    if not isinstance(item, dict):
        stats.dropped_malformed += 1
        return None
    desc = item.get("business_description")
    doms = item.get("domain_suggestions")
    if not isinstance(desc, str) or not desc.strip() or not isinstance(doms, list):
        stats.dropped_malformed += 1
        return None
    desc = " ".join(desc.split())
    if spec.lang == "ja" and not _JAPANESE.search(desc):
        stats.dropped_wrong_script += 1
        return None
    if safety is not None and safety[0](desc):
        stats.dropped_unsafe += 1
        return None
    valid: dict[str, None] = {}
    for dom in doms:
        if not isinstance(dom, str):
            stats.invalid_domains += 1
            continue
        try:
            canonical = normalize_domain(dom)
        except InvalidDomain:
            stats.invalid_domains += 1
            continue
        if safety is not None and safety[1](canonical):
            stats.unsafe_domains += 1
            continue
        valid.setdefault(canonical, None)
    if len(valid) < MIN_DOMAINS:
        stats.dropped_few_domains += 1
        return None
    return desc, list(valid)[:MAX_DOMAINS]


# --------------------------------------------------------------------------- generation
def generate_v3(
    n_rows: int = 290,
    model: str = DEFAULT_MODEL,
    base_url: str | None = None,
    seed: int = 0,
    out_path: str | os.PathLike[str] = DEFAULT_OUT,
    *,
    batch_size: int = 10,
    temperature: float = 0.9,
    max_requests: int | None = None,
    max_consecutive_errors: int = 3,
    max_completion_tokens: int = 8192,
    timeout: float = 120.0,
    exclude: Sequence[str] | None = None,
    safety: tuple[Callable[[str], bool], Callable[[str], bool]] | None | bool = True,
    progress: bool = True,
) -> V3Result:
    """Generate ``n_rows`` validated rows through Groq and write them to ``out_path``.

    ``base_url`` overrides the API address (``None``: the client's default, which honours
    ``GROQ_BASE_URL``). ``exclude``: descriptions that no row may (nearly) duplicate;
    ``None`` reads the evaluation cases and the held-out list of this repository.
    ``safety``: ``True`` uses ``domain_eval.safety`` when importable, ``False``/``None``
    disables the check, or pass ``(is_unsafe_text, is_unsafe_domain)``.
    Raises :class:`MissingAPIKeyError` without a key and :class:`GenerationError` when
    the rows cannot be produced within ``max_requests``; nothing is written then.
    """
    if not os.environ.get("GROQ_API_KEY"):
        raise MissingAPIKeyError(
            "GROQ_API_KEY is not set: create a key at https://console.groq.com/keys and export "
            "GROQ_API_KEY=... to regenerate v3 (the committed data/domain_dataset_v3.jsonl needs no key)"
        )
    if n_rows < 1:
        raise ValueError(f"n_rows must be >= 1, got {n_rows}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    import groq
    from tqdm.auto import tqdm

    client = groq.Groq(api_key=os.environ["GROQ_API_KEY"], base_url=base_url, max_retries=0, timeout=timeout)
    if exclude is None:
        heldout = REPO_ROOT / "tests" / "data" / "heldout_descriptions.txt"
        exclude = load_eval_descriptions(REPO_ROOT / "cases", [heldout] if heldout.is_file() else [])
    exclude_tokens = [(e, description_tokens(e)) for e in exclude]
    checker = _default_safety() if safety is True else (safety or None)
    if max_requests is None:
        max_requests = 3 * math.ceil(n_rows / batch_size) + 3

    queue = collections.deque(plan_specs(n_rows, seed))
    stats = GenerationStats()
    rows: list[Row] = []
    meta: list[dict[str, str]] = []
    seen: set[str] = set()
    consecutive_errors = 0
    with tqdm(total=n_rows, desc="v3 rows", unit="row", disable=not progress) as bar:
        while len(rows) < n_rows:
            if stats.requests >= max_requests:
                raise GenerationError(
                    f"only {len(rows)} of {n_rows} rows after {stats.requests} requests "
                    f"(max_requests={max_requests}); nothing written. Stats: {stats}"
                )
            batch = [queue.popleft() for _ in range(min(batch_size, len(queue)))]
            stats.requests += 1
            try:
                response = client.chat.completions.create(
                    model=model,
                    messages=build_messages(batch),
                    temperature=temperature,
                    response_format={"type": "json_object"},
                    max_completion_tokens=max_completion_tokens,
                    seed=seed + stats.requests,
                )
            except groq.APIError as exc:
                stats.api_errors += 1
                consecutive_errors += 1
                queue.extendleft(reversed(batch))
                if consecutive_errors >= max_consecutive_errors:
                    raise GenerationError(
                        f"{consecutive_errors} failed requests in a row, the last: {type(exc).__name__}: {exc}; "
                        f"nothing written"
                    ) from exc
                continue
            consecutive_errors = 0
            content = response.choices[0].message.content if response.choices else None
            items = parse_response(content)
            if items is None:
                stats.bad_responses += 1
                queue.extend(batch)
                continue
            stats.rows_returned += len(items)
            for i, spec in enumerate(batch):
                cleaned = _clean_row(items[i], spec, stats, checker) if i < len(items) else None
                if cleaned is None:
                    queue.append(spec)
                    continue
                desc, domains = cleaned
                key = " ".join(desc.casefold().split())
                if key in seen:
                    stats.dropped_duplicate += 1
                    queue.append(spec)
                    continue
                tokens = description_tokens(desc)
                if any((tokens & et) and is_near_duplicate(desc, e) for e, et in exclude_tokens):
                    stats.dropped_eval_overlap += 1
                    queue.append(spec)
                    continue
                seen.add(key)
                rows.append(Row(desc, tuple(domains)))
                meta.append({"description": desc, "lang": spec.lang, "category": spec.category,
                             "industry": spec.industry})
                stats.rows_accepted += 1
                bar.update(1)

    out = Path(out_path)
    write_dataset(rows, out)
    mpath = write_meta(meta, meta_path_for(out), source=f"groq {model}, seed {seed}, temperature {temperature}")
    return V3Result(rows, meta, stats, out, mpath)


# --------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training.groq_v3",
        description="Regenerate the v3 dataset through the Groq chat-completions API. Needs GROQ_API_KEY "
        "in the environment. Writes the jsonl and a <name>.meta.json side file of per-row tags; "
        "writes nothing unless all rows were produced.",
    )
    parser.add_argument("--out", default=str(DEFAULT_OUT), metavar="PATH",
                        help="output jsonl path (default: %(default)s)")
    parser.add_argument("--rows", type=int, default=290, metavar="N", help="number of rows (default: %(default)s)")
    parser.add_argument("--model", default=DEFAULT_MODEL, metavar="M", help="Groq model id (default: %(default)s)")
    parser.add_argument("--base-url", default=None, metavar="URL",
                        help="API base URL, e.g. http://127.0.0.1:8000 for a local server "
                        "(default: the client's, which honours GROQ_BASE_URL)")
    parser.add_argument("--seed", type=int, default=0, metavar="N",
                        help="seed for the plan of categories/languages/industries and the API seed (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=10, metavar="N",
                        help="rows asked for per request (default: %(default)s)")
    parser.add_argument("--temperature", type=float, default=0.9, metavar="T",
                        help="sampling temperature (default: %(default)s)")
    parser.add_argument("--max-requests", type=int, default=None, metavar="N",
                        help="give up after this many requests (default: 3 x the batches needed + 3)")
    parser.add_argument("--timeout", type=float, default=120.0, metavar="S",
                        help="per-request timeout in seconds (default: %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = generate_v3(
            n_rows=args.rows, model=args.model, base_url=args.base_url, seed=args.seed, out_path=args.out,
            batch_size=args.batch_size, temperature=args.temperature, max_requests=args.max_requests,
            timeout=args.timeout, progress=not args.no_progress,
        )
    except MissingAPIKeyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (GenerationError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    s = result.stats
    print(f"wrote {len(result.rows)} rows to {result.out_path} and tags to {result.meta_path} "
          f"({s.requests} requests; dropped: {s.invalid_domains} invalid domains, {s.dropped_few_domains} rows "
          f"with <{MIN_DOMAINS} valid domains, {s.dropped_unsafe} unsafe, {s.dropped_duplicate} duplicate, "
          f"{s.dropped_eval_overlap} overlapping evaluation cases)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
