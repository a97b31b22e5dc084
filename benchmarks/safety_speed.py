"""Milliseconds per description for each safety layer, side by side in one run.

    python -m benchmarks.safety_speed [--repeat 3] [--json out.json]

Texts: the safety corpus's train and dev rows plus every case description (the test split
is not read). Each layer runs over all texts ``--repeat`` times; the best pass is reported
(the least disturbed by other work on a noisy machine). The target is <= 5 ms per
description for the shipped filter (rules + classifier) on this CPU, with no network.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from benchmarks.common import REPO


def _texts() -> list[str]:
    import yaml

    from training.safety_corpus import load_splits

    splits = load_splits(include_test=False)
    texts = [r.text for r in splits["train"] + splits["dev"]]
    for path in sorted((REPO / "cases").glob("*.yaml")):
        texts += [c["description"] for c in yaml.safe_load(path.read_text()).get("cases", [])]
    return texts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.safety_speed", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    from domain_eval.safety import SafetyFilter
    from domain_eval.safety_model import default_classifier

    texts = _texts()
    rules, full, clf = SafetyFilter(classifier=None), SafetyFilter(), default_classifier()
    layers = {"rules": rules.check, "classifier": clf.predict, "rules+classifier (shipped)": full.check}
    for check in layers.values():  # warm caches (regexes, confusables table) outside the timing
        check(texts[0])
    results = {}
    for name, check in layers.items():
        passes = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            for text in texts:
                check(text)
            passes.append((time.perf_counter() - t0) / len(texts) * 1000)
        results[name] = {"best_ms": round(min(passes), 4), "median_ms": round(statistics.median(passes), 4)}
    lengths = [len(t) for t in texts]
    print(f"{len(texts)} texts, median {statistics.median(lengths):.0f} chars, longest {max(lengths)}")
    print(f"{'layer':<28} {'ms/text best':>13} {'median':>8}")
    for name, r in results.items():
        print(f"{name:<28} {r['best_ms']:>13.3f} {r['median_ms']:>8.3f}")
    shipped = results["rules+classifier (shipped)"]["best_ms"]
    print(f"target <= 5 ms per description: {'met' if shipped <= 5 else 'NOT met'} ({shipped:.3f} ms)")
    if args.json:
        args.json.write_text(json.dumps({"texts": len(texts), "layers": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
