"""The learned router's classifier: nearest-neighbour votes, honest shares, a file it survives."""

from __future__ import annotations

import pytest

from concierge.core.errors import ValidationError
from concierge.reasoning.learned import Example, NearestNeighbours
from concierge.reasoning.router import LearnedRouter, TurnFeatures, feature_vector

PLAN = TurnFeatures(max_effect="write", planned_steps=3)
ASK = TurnFeatures(matching_entities=3, max_effect="write")
SIMPLE = TurnFeatures(max_effect="read")


def _examples() -> tuple[Example, ...]:
    rows = [(PLAN, "plan")] * 4 + [(ASK, "tot")] * 4 + [(SIMPLE, "react")] * 4 + [(SIMPLE, "plan")]
    return tuple(Example(tuple(feature_vector(f)), s) for f, s in rows)  # type: ignore[arg-type]


def test_votes_of_the_nearest_examples_and_their_share():
    model = NearestNeighbours(_examples(), k=5)
    assert model(feature_vector(PLAN)) == ("plan", 0.8)  # 4 plans, then the nearest of the rest
    assert model(feature_vector(ASK))[0] == "tot"
    strategy, share = model(feature_vector(SIMPLE))
    assert strategy == "react" and share == 0.8


def test_the_learned_router_defers_to_the_rules_where_the_vote_is_thin(tmp_path):
    path = tmp_path / "router.json"
    NearestNeighbours(_examples(), k=5).save(path)
    loaded = NearestNeighbours.load(path)
    assert loaded == NearestNeighbours(_examples(), k=5)
    assert LearnedRouter(loaded, min_probability=0.7).route(PLAN).strategy == "plan"
    thin = LearnedRouter(NearestNeighbours(_examples(), k=13), min_probability=0.7).route(PLAN)
    assert thin.strategy == "plan" and thin.reasons[0].startswith("classifier unsure")  # the rules agree


def test_bad_models_and_inputs_are_refused(tmp_path):
    with pytest.raises(ValidationError):
        NearestNeighbours(())
    with pytest.raises(ValidationError):
        NearestNeighbours(_examples(), k=0)
    with pytest.raises(ValidationError):
        NearestNeighbours((Example((1.0,), "plan"), Example((1.0, 2.0), "tot")))
    with pytest.raises(ValidationError):
        NearestNeighbours((Example((1.0,), "guess"),))  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        NearestNeighbours(_examples())([1.0])
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "something else"}')
    with pytest.raises(ValidationError, match="not a router model"):
        NearestNeighbours.load(bad)
    with pytest.raises(ValidationError, match="cannot read"):
        NearestNeighbours.load(tmp_path / "missing.json")
