"""The layered safety filter: confusables normalisation, the learned classifier and its files,
the veto, domains read by the classifier, and the corpus's frozen test split."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from domain_eval.safety import SafetyFilter, default_filter, fold_homoglyphs, normalize_text
from domain_eval.safety_model import ClassifierError, SafetyClassifier, default_classifier, features, shipped_paths
from training import safety_classifier as trainer
from training.safety_corpus import CorpusError, load_splits

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO / "data" / "safety_corpus"

# Floors on the held-out dev split (the shipped model never saw it; measured values in
# training/README.md). A rules-only filter misses them by far, so they can fail.
DEV_MIN_PRECISION = 0.88
DEV_MIN_RECALL = 0.70


@pytest.fixture(scope="module")
def dev_rows():
    return load_splits(include_test=False)["dev"]


def _counts(safety: SafetyFilter, rows) -> trainer.Counts:
    c = trainer.Counts()
    for row in rows:
        c = c.add(row.blocked, safety.check(row.text).blocked)
    return c


# ------------------------------------------------------------------ normalisation
def test_confusables_come_from_unicodes_table() -> None:
    assert fold_homoglyphs("саsіnо") == "casino"
    # Coptic kapa and Greek digamma are only in Unicode's confusables list (read through
    # confusable_homoglyphs), never in a hand-written table.
    assert fold_homoglyphs("ⲕetamine") == "ketamine" and fold_homoglyphs("ϝentanyl") == "fentanyl"
    assert default_filter().check("ⲕetamine and ϝentanyl delivered").blocked


def test_russian_and_greek_text_stays_readable() -> None:
    assert normalize_text("Купить сор и рос") == "купить сор и рос"
    assert normalize_text("Καφέ στην Αθήνα") == "καφε στην αθηνα"


def test_homoglyph_word_in_latin_text_is_folded_even_without_latin_letters() -> None:
    # "сосаіnе" has a Latin n; "рорру" (all Cyrillic look-alikes) is folded in a Latin sentence.
    assert "poppy" in normalize_text("buy рорру seeds tea strong")


# ------------------------------------------------------------------ classifier files
def test_shipped_classifier_is_part_of_the_filter_identity() -> None:
    clf = default_classifier()
    assert default_filter().version.split("+")[1] == clf.version.replace("+", "")
    assert clf.version.startswith("clf-") and 0 <= clf.veto < clf.threshold <= clf.domain_threshold < 1
    header, weights = shipped_paths()
    assert weights.stat().st_size < 4_000_000  # a small data file, in git


def _copy_model(tmp_path: Path) -> tuple[Path, Path]:
    header, weights = shipped_paths()
    return Path(shutil.copy(header, tmp_path / header.name)), Path(shutil.copy(weights, tmp_path / weights.name))


def test_weights_that_do_not_match_their_header_are_refused(tmp_path: Path) -> None:
    header, weights = _copy_model(tmp_path)
    weights.write_bytes(weights.read_bytes() + b"\0")
    with pytest.raises(ClassifierError, match="safety_classifier.npz: sha256"):
        SafetyClassifier.load(header, weights)


def test_a_model_of_other_features_is_refused(tmp_path: Path) -> None:
    header, weights = _copy_model(tmp_path)
    data = json.loads(header.read_text())
    data["feature_version"] = 0
    header.write_text(json.dumps(data))
    with pytest.raises(ClassifierError, match="feature_version"):
        SafetyClassifier.load(header, weights)


def test_features_are_stable_across_processes() -> None:
    # CRC-32 hashing, not Python's salted hash(): the same text gives the same buckets anywhere.
    from domain_eval.safety_model import hashed

    buckets, value = hashed("Online casino 🎰", 16)
    assert buckets[:3] == sorted(buckets)[:3] and value == pytest.approx(1 / len(buckets) ** 0.5)
    assert "e:slot machine" in features("Online casino 🎰")


# ------------------------------------------------------------------ the layers on held-out data
def test_layered_filter_meets_its_floors_on_the_dev_split(dev_rows) -> None:
    c = _counts(default_filter(), dev_rows)
    assert c.precision >= DEV_MIN_PRECISION and c.recall >= DEV_MIN_RECALL, c


def test_rules_alone_fail_those_floors(dev_rows) -> None:
    # The known-bad input for the floors above: without the classifier, recall collapses.
    c = _counts(SafetyFilter(classifier=None), dev_rows)
    assert c.recall < DEV_MIN_RECALL


def test_ordinary_descriptions_are_not_blocked() -> None:
    rows = trainer.ordinary_rows(trainer.ORDINARY_DEV)
    blocked = [r.text for r in rows if default_filter().check(r.text).blocked]
    assert len(blocked) <= trainer.MAX_ORDINARY_FALSE_BLOCKS * len(rows), blocked


def test_every_allowed_case_is_allowed_and_every_unsafe_case_blocked() -> None:
    for path in sorted((REPO / "cases").glob("*.yaml")):
        data = yaml.safe_load(path.read_text())
        expect = (data.get("defaults") or {}).get("expect", "allowed")
        for case in data["cases"]:
            verdict = default_filter().check(case["description"])
            assert verdict.blocked == ((case.get("expect") or expect) == "blocked"), (path.name, case["id"], verdict.reason)


def test_a_block_names_its_layer_and_category() -> None:
    rules = default_filter().check("Online casino with live roulette")
    assert rules.layer == "rules" and rules.category == "gambling" and rules.p_blocked is not None
    learned = default_filter().check(CLASSIFIER_ONLY)
    assert learned.blocked and learned.layer == "classifier" and learned.category in default_filter().categories
    assert "P(blocked)" in learned.reason


def _shipped_copy(**settings) -> SafetyClassifier:
    clf = SafetyClassifier.load(*shipped_paths())
    for name, value in settings.items():
        setattr(clf, name, value)
    return clf


def test_the_veto_lets_a_counter_harm_organisation_through_and_says_why() -> None:
    # Selection on dev chose no veto for the shipped model (training/safety_classifier.py keeps
    # 0 when a veto does not help); the mechanism is tested with one switched on.
    assert SafetyFilter(classifier=None).check(VETOED).blocked  # the policy term alone blocks it
    verdict = SafetyFilter(classifier=_shipped_copy(veto=0.1)).check(VETOED)
    assert not verdict.blocked and "veto" in verdict.reason and "stalkerware" in verdict.reason


def test_a_generated_domain_is_read_by_the_classifier_too() -> None:
    assert not SafetyFilter(classifier=None).check_domain(CLASSIFIER_DOMAIN).blocked
    # The shipped domain threshold blocks at most 0.1% of the datasets' domains, so it rarely
    # fires; with a lower one the same reading blocks, naming the words it read.
    verdict = SafetyFilter(classifier=_shipped_copy(domain_threshold=0.7)).check_domain(CLASSIFIER_DOMAIN)
    assert verdict.blocked and verdict.layer == "classifier" and "read as 'kidneys for cash'" in verdict.reason


def test_short_texts_need_the_domain_threshold() -> None:
    clf = default_classifier()
    assert clf.predict("skills").threshold == clf.domain_threshold
    assert clf.predict("Family bakery with sourdough and cinnamon rolls in Leeds").threshold == clf.threshold
    assert not default_filter().check("skills").blocked


# ------------------------------------------------------------------ corpus and training
def test_the_frozen_test_split_cannot_change_silently(tmp_path: Path) -> None:
    copy = tmp_path / "corpus"
    shutil.copytree(CORPUS, copy)
    test_file = copy / "test_1.jsonl"
    test_file.write_text(test_file.read_text().replace('"allowed"', '"blocked"', 1))
    with pytest.raises(CorpusError, match="test_1.jsonl: changed after the test split was frozen"):
        load_splits(copy)
    load_splits(copy, include_test=False)  # tuning never reads it


def test_fitting_is_deterministic() -> None:
    rows = load_splits(include_test=False)["train"][::6]
    first, second = trainer.fit(rows, 14, 30.0), trainer.fit(rows, 14, 30.0)
    assert np.array_equal(first[0], second[0]) and np.array_equal(first[1], second[1])


def test_train_command_writes_a_loadable_model(tmp_path: Path) -> None:
    header = trainer.train(CORPUS, tmp_path, grid_bits=(14,), grid_c=(30.0,))
    clf = SafetyClassifier.load(tmp_path / "safety_classifier.json", tmp_path / "safety_classifier.npz")
    assert clf.bits == 14 and header["weights_sha256"] == hashlib.sha256(
        (tmp_path / "safety_classifier.npz").read_bytes()).hexdigest()
    assert clf.predict("Online casino with live roulette").p_blocked > 0.5


# Examples from the corpus's train split.
CLASSIFIER_ONLY = "Kidney buyers paying cash, donors flown to a partner clinic, everything arranged."
VETOED = "Helpline that checks phones for stalkerware and helps domestic-abuse survivors secure their devices."
CLASSIFIER_DOMAIN = "kidneysforcash.com"
