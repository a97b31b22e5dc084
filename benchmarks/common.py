"""Shared helpers for the benchmarks: case selection, adapters, memory, tables.

Nothing here imports torch; the benchmark drivers stay light and their workers pay for it.
"""
from __future__ import annotations

import json
import os
import platform
import resource
import sys
from pathlib import Path
from typing import Any, Iterable, Sequence

REPO = Path(__file__).resolve().parent.parent
ADAPTERS = ("v1", "v2", "v3")
QUICK_CASES = 8


def setup_env() -> None:
    """Offline Hugging Face (the embedded base needs no network); paths below are absolute."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


def adapter_paths(names: Sequence[str]) -> dict[str, str]:
    """``v1`` -> ``<repo>/models/v1``; a folder path stays itself, keyed by its name."""
    out: dict[str, str] = {}
    for name in names:
        path = Path(name) if (Path(name) / "adapter_config.json").exists() else REPO / "models" / name
        out[path.name] = str(path.resolve())
    return out


def available_adapters(models_dir: Path = REPO / "models") -> list[str]:
    """Which of v1, v2, v3 exist (an adapter_config.json is written last by training)."""
    return [a for a in ADAPTERS if (models_dir / a / "adapter_config.json").exists()]


def pick_adapters(requested: str | None, full: bool) -> list[str]:
    """``--adapters`` as given, else every trained one; ``--full`` insists on all three."""
    have = available_adapters()
    if requested:
        names = [a.strip() for a in requested.split(",") if a.strip()]
        missing = [a for a in names if a not in have and not (Path(a) / "adapter_config.json").exists()]
        if missing:
            sys.exit(f"adapter(s) not found: {', '.join(missing)} (trained: {', '.join(have) or 'none'})")
        return names
    if not have:
        sys.exit("no adapter in models/ yet (models/v1 appears first when training finishes)")
    if full and len(have) < len(ADAPTERS):
        sys.exit(f"--full covers v1, v2 and v3 but only {', '.join(have)} exist; pass --adapters to run on those")
    return have


def allowed_cases(limit: int | None = None) -> list[dict[str, str]]:
    """Cases expected to get suggestions, as ``{"id", "category", "description"}``.

    With a limit, take them round-robin over categories so that a small set still mixes
    short and long descriptions (which is what length sorting and padding are about).
    """
    from domain_eval.cases import load_cases

    cases, errors = load_cases([REPO / "cases"])
    for err in errors:
        print(f"warning: skipped bad case file: {err}", file=sys.stderr)
    rows = [{"id": c.id, "category": c.category, "description": c.description} for c in cases if c.expect == "allowed"]
    if limit is None or limit >= len(rows):
        return rows
    by_cat: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_cat.setdefault(row["category"], []).append(row)
    picked: list[dict[str, str]] = []
    rank = 0
    while len(picked) < limit:
        for group in by_cat.values():
            if rank < len(group) and len(picked) < limit:
                picked.append(group[rank])
        rank += 1
    return picked


def prompt_lengths(tokenizer: Any, descriptions: Sequence[str], n: int = 5) -> list[int]:
    """Prompt tokens per description, with the one prompt builder generation uses."""
    from domain_eval.prompts import build_prompt

    return [len(tokenizer(build_prompt(tokenizer, d, n), add_special_tokens=False).input_ids) for d in descriptions]


def new_text(tokenizer: Any, ids: Sequence[int]) -> tuple[str, int]:
    """(text, token count) of tokens that ``model.generate`` produced, cut after end-of-turn
    (generate pads rows that ended early), as DomainNameGenerator reports them."""
    ids = list(ids)
    if tokenizer.eos_token_id in ids:
        ids = ids[: ids.index(tokenizer.eos_token_id) + 1]
    return tokenizer.decode(ids, skip_special_tokens=True), len(ids)


def warm_page_cache(adapters: Sequence[str]) -> None:
    """Read the base and adapter files once, so no measured run pays for the first disk read."""
    from domain_eval.models import DEFAULT_BASE, resolve_base

    folders = [Path(resolve_base(DEFAULT_BASE).source), *map(Path, adapter_paths(adapters).values())]
    for folder in folders:
        for f in folder.glob("*"):
            if f.is_file():
                f.read_bytes()


def peak_rss_mb() -> float:
    """This process's peak resident set size (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def machine() -> dict[str, Any]:
    """What the numbers were measured on (saved beside them)."""
    info: dict[str, Any] = {"python": platform.python_version(), "cores": cores(), "platform": platform.platform()}
    try:
        info["cpu"] = next(
            line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")
        )
        info["load_avg"] = os.getloadavg()
        info["busy_share"] = busy_share()
    except (OSError, StopIteration, ValueError):
        pass
    return info


def busy_share(seconds: float = 1.0) -> float:
    """Share of all cores busy over the next ``seconds`` (from /proc/stat), i.e. now, unlike the
    load average, which still counts a run that ended a minute ago."""
    import time

    def sample() -> tuple[int, int]:
        fields = [int(v) for v in open("/proc/stat").readline().split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields), idle

    total0, idle0 = sample()
    time.sleep(seconds)
    total1, idle1 = sample()
    return 1 - (idle1 - idle0) / max(1, total1 - total0)


def describe_machine(info: dict[str, Any]) -> str:
    """One line for the output header, with a warning when other processes use the cores now."""
    load = info.get("load_avg", (0.0,))[0]
    busy = info.get("busy_share")
    line = f"machine: {info.get('cpu', '?')}, {info['cores']} cores, 1-min load average {load:.2f}"
    if busy is not None:
        line += f", {100 * busy:.0f}% of the cores busy at start"
    if (busy if busy is not None else load / max(1, info["cores"])) > 0.2:
        line += ("\nWARNING: the CPU was busy when this started (a training run? another benchmark?). torch\n"
                 "threads spin-wait, so contention makes timings several times slower and the ratios\n"
                 "unreliable. Measure on a quiet machine.")
    return line


def ratio(new: float | None, ref: float | None) -> str:
    if not new or not ref:
        return "-"
    return f"{new / ref:.2f}x"


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A plain fixed-width table; numbers right-aligned."""
    cells = [[str(h) for h in headers]] + [[_fmt(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    numeric = [all(_is_num(r[i]) for r in cells[1:]) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        lines.append("  ".join(c.rjust(w) if numeric[i] else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}" if abs(value) < 1000 else f"{value:,.0f}"
    return "-" if value is None else str(value)


def _is_num(text: str) -> bool:
    return text == "-" or text.replace(",", "").replace(".", "").replace("x", "").replace("-", "").isdigit()


def write_json(path: str | None, payload: dict[str, Any]) -> None:
    if path:
        Path(path).write_text(json.dumps(payload, indent=2))
        print(f"\nwrote {path}")
