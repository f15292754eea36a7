"""A small learned prompt-injection classifier: TF-IDF over word and character n-grams, then
multinomial logistic regression over benign / override / escalation / exfiltration / indirect.

Trained on the train split of the packaged corpus (`corpus.jsonl`, written by `make_corpus.py`)
the first time it is needed, in well under a second, then cached for the process
(`InjectionClassifier.default()`). The split is deterministic: a text is held out when a hash of
its text falls in the last fifth, per label, so `evaluate()` always scores the same held-out rows.

scikit-learn is imported lazily; without it, building a classifier raises `ConfigError` with the
install hint, and `InputGuard` can still run rules only (`InputGuard(use_classifier=False)`).

scikit-learn trains the pipeline and stays the reference; per text, scores come from the pipeline
compiled into plain data (`compiled.py`: the same probabilities within 1e-9, without the per-call
machinery that is most of `predict_proba`'s cost on one text). A pipeline the compiler does not
recognise is scored by scikit-learn.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING, Any

from ...core.errors import ConfigError, ValidationError
from .needles import literal_trie
from .rules import ATTACK_LABELS, LABELS, normalise

if TYPE_CHECKING:
    from .compiled import CompiledScorer

logger = logging.getLogger(__name__)

HOLDOUT_PERCENT = 20
# Training texts the compiled scorer must reproduce before it replaces `predict_proba`.
_PROBES = 64
# The classifier reads at most this much of a text: the first and the last `_CHUNK` characters and
# the chunks in between densest in the words instructions are made of. Vectorising costs time
# linear in what is read (over a millisecond per 1,000 characters), and a whole 32,000-character message
# would bury a short attack in benign n-grams anyway; the rules read all of it.
VIEW_CHARS = 1_500
_CHUNK = 250
_CUES = re.compile(literal_trie((
    "ignor", "disregard", "forget", "overrid", "bypass", "instruct", "prompt", "system", "assistant", "develop",
    "admin", "operator", "root", "sudo", "privileg", "permission", "access", "grant", "escalat", "pretend",
    "jailbreak", "mode", "rules", "polic", "guideline", "restrict", "reveal", "verbatim", "print", "repeat",
    "conversation", "transcript", "customer", "user", "database", "untrusted", "agent", "chatbot", "llm",
    "execute", "invoke", "tool", "<|", "[inst", "<<sys", "<!--", ":write",
)))


@dataclass(frozen=True, slots=True)
class Example:
    text: str
    label: str
    source: str = "user"
    template: str = ""


def load_corpus(path: str | None = None) -> list[Example]:
    """The labelled corpus: the packaged `corpus.jsonl`, or the JSON-lines file at `path`."""
    if path is None:
        raw = resources.files(__package__).joinpath("corpus.jsonl").read_text(encoding="utf-8")
    else:
        with open(path, encoding="utf-8") as f:
            raw = f.read()
    out: list[Example] = []
    for n, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        if row.get("label") not in LABELS or not isinstance(row.get("text"), str):
            raise ValidationError(f"corpus line {n}: bad row {row!r}", hint=f"label must be one of {LABELS}")
        out.append(Example(row["text"], row["label"], row.get("source", "user"), row.get("template", "")))
    return out


def is_holdout(text: str) -> bool:
    """Deterministic ~80/20 split by a hash of the text (stable across processes and machines)."""
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=4).digest()
    return int.from_bytes(digest, "big") % 100 < HOLDOUT_PERCENT


def split(examples: Sequence[Example]) -> tuple[list[Example], list[Example]]:
    train = [e for e in examples if not is_holdout(e.text)]
    test = [e for e in examples if is_holdout(e.text)]
    return train, test


def view(norm: str, limit: int = VIEW_CHARS) -> str:
    """What the classifier reads of a normalised text: all of it up to `limit` characters; beyond,
    the first and last chunks plus the chunks with the most instruction words, in text order.

    One linear pass (a regular expression of plain words) picks the chunks, so the cost of a long
    text is bounded by `limit`, not by its length."""
    if len(norm) <= limit:
        return norm
    n_chunks = -(-len(norm) // _CHUNK)
    counts = [0] * n_chunks
    for m in _CUES.finditer(norm):
        counts[m.start() // _CHUNK] += 1
    keep = {0, n_chunks - 1}
    ranked = sorted((i for i in range(1, n_chunks - 1) if counts[i]), key=lambda i: (-counts[i], i))
    keep.update(ranked[: max(0, limit // _CHUNK - 2)])
    return " ".join(norm[i * _CHUNK:(i + 1) * _CHUNK] for i in sorted(keep))


def _require_sklearn() -> Any:
    try:
        import sklearn  # noqa: F401
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import FeatureUnion, make_pipeline
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ConfigError(
            "the injection classifier needs scikit-learn",
            hint="pip install concierge[guardrails] (or scikit-learn), or use InputGuard(use_classifier=False)",
        ) from exc
    return TfidfVectorizer, LogisticRegression, FeatureUnion, make_pipeline


@dataclass(frozen=True, slots=True)
class ClassReport:
    precision: float
    recall: float
    support: int


@dataclass(frozen=True, slots=True)
class Evaluation:
    """Held-out scores. `attack` treats every attack class as one positive class against benign
    (predicted attack: P(benign) < 0.5, the guard's default flag threshold); `per_class` are
    one-vs-rest on the argmax label; `fpr` is the share of benign held-out texts predicted attack."""

    attack: ClassReport
    per_class: dict[str, ClassReport]
    fpr: float
    n_train: int
    n_test: int
    train_seconds: float
    errors: list[tuple[str, str, str]] = field(default_factory=list)  # (text, true, predicted)

    def lines(self) -> list[str]:
        out = [f"train {self.n_train} / held-out {self.n_test}, trained in {self.train_seconds:.2f} s",
               (f"attack vs benign: precision {self.attack.precision:.3f} recall {self.attack.recall:.3f} "
               f"(n={self.attack.support}); benign FPR {self.fpr:.3f}")]
        for label, r in self.per_class.items():
            out.append(f"  {label:<13} precision {r.precision:.3f} recall {r.recall:.3f} (n={r.support})")
        return out


def _ratio(a: int, b: int) -> float:
    return a / b if b else 0.0


class InjectionClassifier:
    """`score(text) -> {label: probability}` over LABELS; `attack_probability(text)` = 1 - P(benign)."""

    _default: InjectionClassifier | None = None
    _default_lock = threading.Lock()

    def __init__(self, examples: Iterable[Example] | None = None, *, seed: int = 0) -> None:
        TfidfVectorizer, LogisticRegression, FeatureUnion, make_pipeline = _require_sklearn()
        corpus = list(examples) if examples is not None else load_corpus()
        self.train_examples, self.test_examples = split(corpus)
        if not self.train_examples:
            raise ValidationError("empty training corpus", hint="the corpus needs labelled rows")
        features = FeatureUnion([
            ("word", TfidfVectorizer(analyzer="word", ngram_range=(1, 2), min_df=1, sublinear_tf=True,
                                     token_pattern=r"(?u)\b\w+\b|[<>\[\]|#:{}]")),
            ("char", TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), min_df=2, sublinear_tf=True,
                                     max_features=30000)),
        ])
        # saga: ~10x faster than lbfgs here and deterministic given random_state.
        model = LogisticRegression(C=8.0, solver="saga", tol=1e-3, max_iter=1000, class_weight="balanced",
                                   random_state=seed)
        self._pipeline = make_pipeline(features, model)
        started = time.perf_counter()
        self._pipeline.fit([normalise(e.text) for e in self.train_examples], [e.label for e in self.train_examples])
        self.train_seconds = time.perf_counter() - started
        self.labels: tuple[str, ...] = tuple(str(c) for c in self._pipeline.classes_)
        self._benign = self.labels.index("benign")
        self._scorer = self._compile([view(normalise(e.text)) for e in self.train_examples[:_PROBES]])

    def _compile(self, probes: Sequence[str]) -> CompiledScorer | None:
        from .compiled import Unsupported, compile_pipeline  # numpy comes with scikit-learn

        try:
            return compile_pipeline(self._pipeline, probes)
        except Unsupported as exc:
            logger.warning("injection classifier: scoring through scikit-learn per text (%s)", exc)
            return None

    def _probabilities(self, viewed: str) -> Sequence[float]:
        if self._scorer is not None:
            return self._scorer.predict_proba(viewed)
        row: Sequence[float] = self._pipeline.predict_proba([viewed])[0]
        return row

    @classmethod
    def default(cls) -> InjectionClassifier:
        """The process-wide classifier trained on the packaged corpus (trained once, then cached)."""
        if cls._default is None:
            with cls._default_lock:
                if cls._default is None:
                    cls._default = cls()
        return cls._default

    def score(self, text: str) -> dict[str, float]:
        if not isinstance(text, str):
            raise ValidationError(f"text must be a str, got {type(text).__name__}")
        return self.score_normalised(normalise(text))

    def score_normalised(self, norm: str) -> dict[str, float]:
        """`score` of a text that already went through `normalise` (the guard has it at hand)."""
        probs = self._probabilities(view(norm))
        return {label: float(p) for label, p in zip(self.labels, probs, strict=True)}

    def score_many(self, texts: Sequence[str]) -> list[dict[str, float]]:
        """`score` of each text (the same numbers as one `score` call per text)."""
        if not texts:
            return []
        if self._scorer is None:
            matrix: Sequence[Sequence[float]] = self._pipeline.predict_proba([view(normalise(t)) for t in texts])
        else:
            matrix = [self._scorer.predict_proba(view(normalise(t))) for t in texts]
        return [{label: float(p) for label, p in zip(self.labels, row, strict=True)} for row in matrix]

    def reference_score(self, text: str) -> dict[str, float]:
        """`score` through scikit-learn's `predict_proba` (what the compiled scorer must reproduce)."""
        probs = self._pipeline.predict_proba([view(normalise(text))])[0]
        return {label: float(p) for label, p in zip(self.labels, probs, strict=True)}

    def attack_probability(self, text: str) -> float:
        return 1.0 - self.score(text)["benign"]

    def evaluate(self, examples: Sequence[Example] | None = None, *, threshold: float = 0.5) -> Evaluation:
        """Precision/recall on the held-out split (or on `examples`), per attack class and overall."""
        test = list(examples) if examples is not None else self.test_examples
        scores = self.score_many([e.text for e in test])
        predicted = []
        for s in scores:
            attack_p = 1.0 - s["benign"]
            if attack_p >= threshold:
                predicted.append(max((lb for lb in self.labels if lb != "benign"), key=lambda lb: s[lb]))
            else:
                predicted.append("benign")
        truth = [e.label for e in test]
        tp = sum(t != "benign" and p != "benign" for t, p in zip(truth, predicted, strict=True))
        fp = sum(t == "benign" and p != "benign" for t, p in zip(truth, predicted, strict=True))
        fn = sum(t != "benign" and p == "benign" for t, p in zip(truth, predicted, strict=True))
        benign_n = truth.count("benign")
        per_class = {}
        for label in ATTACK_LABELS:
            ctp = sum(t == label and p == label for t, p in zip(truth, predicted, strict=True))
            cfp = sum(t != label and p == label for t, p in zip(truth, predicted, strict=True))
            cfn = sum(t == label and p != label for t, p in zip(truth, predicted, strict=True))
            per_class[label] = ClassReport(_ratio(ctp, ctp + cfp), _ratio(ctp, ctp + cfn), truth.count(label))
        errors = [(e.text, t, p) for e, t, p in zip(test, truth, predicted, strict=True)
                  if (t == "benign") != (p == "benign")]
        return Evaluation(
            attack=ClassReport(_ratio(tp, tp + fp), _ratio(tp, tp + fn), len(truth) - benign_n),
            per_class=per_class, fpr=_ratio(fp, benign_n), n_train=len(self.train_examples), n_test=len(test),
            train_seconds=self.train_seconds, errors=errors,
        )
