"""A fitted TF-IDF + logistic-regression pipeline compiled into plain scoring data.

scikit-learn's `predict_proba` on one text spends most of its time in per-call machinery
(FeatureUnion's joblib dispatch, input validation, sparse stacking), not in arithmetic.
`compile_pipeline` reads the fitted parts once - each vectorizer's own analyzer (so tokens and
n-grams are identical), vocabulary and idf, the model's coefficients and intercepts - and
`CompiledScorer.predict_proba(text)` repeats the same arithmetic for one text: counts, sublinear tf,
idf and L2 norm per vectorizer, then intercept + dot product and the model's link (sigmoid for two
classes, softmax for more).

What it does not recognise raises `Unsupported` (the caller keeps scoring through scikit-learn), and
a compiled scorer must reproduce the pipeline's probabilities on probe texts before it is returned.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import chain, repeat
from typing import Any

import numpy as np

TOLERANCE = 1e-9


class Unsupported(Exception):
    """The pipeline is not one `compile_pipeline` can reproduce exactly."""


@dataclass(frozen=True, slots=True)
class _Block:
    """One TF-IDF vectorizer: its own analyzer, its vocabulary mapped to columns of the whole feature
    space, and how its counts become weights."""

    analyze: Callable[[str], Iterable[str]]
    vocab: dict[str, int]
    sublinear: bool
    binary: bool
    l2: bool


@dataclass(frozen=True, slots=True)
class CompiledScorer:
    """`predict_proba(text)`: the fitted pipeline's class probabilities for one text, in `classes`
    order, from plain data (no scikit-learn call per text).

    A term outside every vocabulary maps to the extra column `missing`, whose idf and weights are 0,
    so it adds exactly nothing to a norm or a dot product; that saves a second dictionary look-up per
    term (the look-ups into the large vocabularies are much of the cost)."""

    classes: tuple[Any, ...]
    blocks: tuple[_Block, ...]
    idf: np.ndarray          # (n_features + 1,): idf per column (1 without use_idf), 0 for `missing`
    weights: np.ndarray      # (n_features + 1, n_outputs): the model's coef_.T, a zero row for `missing`
    intercept: np.ndarray    # (n_outputs,)
    binary_link: bool        # two classes: one output through the sigmoid

    @property
    def missing(self) -> int:
        return len(self.idf) - 1

    def decision(self, text: str) -> np.ndarray:
        """The model's decision function for one text (what predict_proba's link reads)."""
        counts = [Counter(block.analyze(text)) for block in self.blocks]
        n = sum(map(len, counts))
        if not n:
            return self.intercept.copy()
        missing = repeat(self.missing)
        cols = np.fromiter(chain.from_iterable(
            map(block.vocab.get, c, missing) for block, c in zip(self.blocks, counts, strict=True)), np.intp, n)
        tf = np.fromiter(chain.from_iterable(c.values() for c in counts), np.float64, n)
        start = 0
        for block, c in zip(self.blocks, counts, strict=True):
            end = start + len(c)
            part = tf[start:end]
            if block.binary:
                part.fill(1.0)
            elif block.sublinear:
                np.log(part, out=part)
                part += 1.0
            part *= self.idf[cols[start:end]]
            if block.l2:
                norm = math.sqrt(float(part @ part))
                if norm > 0.0:
                    part /= norm
            start = end
        result: np.ndarray = self.intercept + tf @ self.weights[cols]
        return result

    def predict_proba(self, text: str) -> list[float]:
        d = self.decision(text)
        if self.binary_link:
            p = _expit(float(d[0]))
            return [1.0 - p, p]
        z = d.tolist()
        top = max(z)
        e = [math.exp(x - top) for x in z]
        s = sum(e)
        return [x / s for x in e]


def _expit(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def _vectorizers(features: Any) -> list[Any]:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import FeatureUnion

    if type(features) is TfidfVectorizer:
        return [features]
    if type(features) is not FeatureUnion:
        raise Unsupported(f"features step is {type(features).__name__}, not TfidfVectorizer or FeatureUnion")
    if features.transformer_weights:
        raise Unsupported("FeatureUnion has transformer_weights")
    out = []
    for name, vec in features.transformer_list:
        if type(vec) is not TfidfVectorizer:
            raise Unsupported(f"FeatureUnion part {name!r} is {type(vec).__name__}, not TfidfVectorizer")
        out.append(vec)
    return out


def _block(vec: Any, offset: int) -> tuple[_Block, np.ndarray]:
    """The block for one fitted vectorizer whose columns start at `offset`, and its idf (1 without use_idf)."""
    if vec.input != "content":
        raise Unsupported(f"vectorizer input={vec.input!r}")
    if np.dtype(vec.dtype) != np.float64:
        raise Unsupported(f"vectorizer dtype {vec.dtype}")
    if vec.norm not in ("l2", None):
        raise Unsupported(f"vectorizer norm={vec.norm!r}")
    vocab = {str(t): int(i) for t, i in vec.vocabulary_.items()}
    n = len(vocab)
    if sorted(vocab.values()) != list(range(n)):
        raise Unsupported("vectorizer vocabulary does not index its columns 0..n-1")
    idf = np.asarray(vec.idf_, dtype=np.float64) if vec.use_idf else np.ones(n)
    if idf.shape != (n,):
        raise Unsupported(f"idf_ shape {idf.shape} for {n} terms")
    block = _Block(analyze=vec.build_analyzer(), vocab={t: i + offset for t, i in vocab.items()},
                   sublinear=bool(vec.sublinear_tf), binary=bool(vec.binary), l2=vec.norm == "l2")
    return block, idf


def compile_pipeline(pipeline: Any, probes: Sequence[str]) -> CompiledScorer:
    """Compile a fitted `Pipeline([TfidfVectorizer | FeatureUnion of TfidfVectorizers, LogisticRegression])`.

    The result must match `pipeline.predict_proba` within `TOLERANCE` on every probe text (plus the
    empty text), else `Unsupported`: a scikit-learn version that computes differently is caught here."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    if type(pipeline) is not Pipeline or len(pipeline.steps) != 2:
        raise Unsupported(f"not a two-step Pipeline: {type(pipeline).__name__}")
    features, model = (step for _, step in pipeline.steps)
    if type(model) is not LogisticRegression:
        raise Unsupported(f"model step is {type(model).__name__}, not LogisticRegression")
    classes = tuple(model.classes_)
    coef = np.asarray(model.coef_, dtype=np.float64)
    intercept = np.asarray(model.intercept_, dtype=np.float64).copy()
    binary_link = len(classes) == 2
    if coef.ndim != 2 or coef.shape[0] != (1 if binary_link else len(classes)) or intercept.shape != coef.shape[:1]:
        raise Unsupported(f"coef_ shape {coef.shape}, intercept_ shape {intercept.shape} for {len(classes)} classes")
    if not binary_link and getattr(model, "multi_class", None) == "ovr":
        raise Unsupported("one-vs-rest multiclass probabilities")
    blocks: list[_Block] = []
    idfs: list[np.ndarray] = []
    offset = 0
    for vec in _vectorizers(features):
        block, idf = _block(vec, offset)
        blocks.append(block)
        idfs.append(idf)
        offset += len(idf)
    if offset != coef.shape[1]:
        raise Unsupported(f"vectorizers give {offset} features, the model has {coef.shape[1]}")
    weights = np.zeros((offset + 1, coef.shape[0]))
    weights[:offset] = coef.T
    scorer = CompiledScorer(classes=classes, blocks=tuple(blocks), idf=np.concatenate([*idfs, [0.0]]),
                            weights=weights, intercept=intercept, binary_link=binary_link)
    texts = [*probes, ""]
    expected = pipeline.predict_proba(texts)
    for text, row in zip(texts, expected, strict=True):
        got = scorer.predict_proba(text)
        worst = max(abs(a - float(b)) for a, b in zip(got, row, strict=True))
        if worst > TOLERANCE:
            raise Unsupported(f"compiled probabilities differ by {worst:.3g} on probe {text[:60]!r}")
    return scorer
