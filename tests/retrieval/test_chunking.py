"""Heading-aware chunking: section paths, no mixing of sections, exact window overlap, argument checks."""

from __future__ import annotations

from itertools import pairwise

import pytest

from concierge.core.errors import ValidationError
from concierge.retrieval.chunking import Chunk, chunk_document, split_sections, word_windows
from concierge.retrieval.documents import Document


def _doc(text: str, title: str = "") -> Document:
    return Document(tenant="acme", doc_id="policy", text=text, title=title)


def _words(prefix: str, count: int) -> str:
    return " ".join(f"{prefix}{i}" for i in range(count))


def _body(chunk: Chunk) -> list[str]:
    """The chunk's words without its heading line."""
    lines = chunk.text.split("\n", 1)
    return (lines[1] if chunk.heading else lines[0]).split()


POLICY = f"""Intro words before any heading.

# Returns
General rule.

## Electronics
Electronics come back within 30 days.

### Laptops
Wipe your laptop first.

## Clothing
Clothing comes back within 60 days.

# Shipping
{_words("s", 10)}
"""


def test_heading_paths_follow_the_outline() -> None:
    chunks = chunk_document(_doc(POLICY, title="Store policy"))
    assert [c.heading for c in chunks] == [
        "Store policy",
        "Returns",
        "Returns > Electronics",
        "Returns > Electronics > Laptops",
        "Returns > Clothing",
        "Shipping",
    ]
    assert [c.chunk_no for c in chunks] == list(range(len(chunks)))
    assert {c.doc_id for c in chunks} == {"policy"}


def test_each_chunk_starts_with_its_heading_path() -> None:
    for chunk in chunk_document(_doc(POLICY)):
        if chunk.heading:
            assert chunk.text.startswith(chunk.heading + "\n")
    laptops = chunk_document(_doc(POLICY))[3]
    assert laptops.text == "Returns > Electronics > Laptops\nWipe your laptop first."


def test_text_before_the_first_heading_without_title_has_no_heading() -> None:
    first = chunk_document(_doc(POLICY))[0]
    assert first.heading == "" and first.text == "Intro words before any heading."


def test_sections_are_never_merged() -> None:
    chunks = chunk_document(_doc(POLICY))
    electronics = next(c for c in chunks if c.heading == "Returns > Electronics")
    assert "30 days" in electronics.text and "60 days" not in electronics.text and "laptop" not in electronics.text
    # Even tiny sections stay apart rather than being packed together.
    assert len(chunks) == 6


def test_headings_without_body_only_show_up_in_paths() -> None:
    chunks = chunk_document(_doc("# A\n## B\ntext under b\n"))
    assert [(c.heading, c.text) for c in chunks] == [("A > B", "A > B\ntext under b")]


def test_heading_levels_can_skip_and_climb_back() -> None:
    sections = split_sections("# A\na\n### C\nc\n## B\nb\n# D\nd\n")
    assert [s.heading for s in sections] == ["A", "A > C", "A > B", "D"]


def test_hash_without_space_and_fenced_code_are_not_headings() -> None:
    text = "# Real\n#hashtag is text\n```\n# inside code\n```\nafter\n"
    chunks = chunk_document(_doc(text))
    assert [c.heading for c in chunks] == ["Real"]
    assert "#hashtag" in chunks[0].text and "# inside code" in chunks[0].text


def test_closing_hashes_are_stripped_from_headings() -> None:
    assert split_sections("## Refunds ##\nbody\n")[0].heading == "Refunds"


def test_long_sections_become_windows_with_exact_overlap() -> None:
    words = _words("w", 250)
    chunks = chunk_document(_doc(f"# Long\n{words}\n"), max_words=100, overlap_words=30)
    bodies = [_body(c) for c in chunks]
    assert [len(b) for b in bodies] == [100, 100, 100, 40]
    for before, after in pairwise(bodies):
        assert before[-30:] == after[:30]
    covered = bodies[0] + [w for b in bodies[1:] for w in b[30:]]
    assert covered == words.split()
    assert all(c.heading == "Long" and c.text.startswith("Long\n") for c in chunks)


def test_section_of_exactly_max_words_is_one_chunk() -> None:
    chunks = chunk_document(_doc(_words("w", 120)), max_words=120, overlap_words=30)
    assert len(chunks) == 1 and len(_body(chunks[0])) == 120


def test_zero_overlap_partitions_the_words() -> None:
    chunks = chunk_document(_doc(_words("w", 45)), max_words=20, overlap_words=0)
    assert [len(_body(c)) for c in chunks] == [20, 20, 5]
    assert [w for c in chunks for w in _body(c)] == _words("w", 45).split()


def test_windows_never_cross_a_heading() -> None:
    text = f"# One\n{_words('a', 50)}\n# Two\n{_words('b', 50)}\n"
    for chunk in chunk_document(_doc(text), max_words=20, overlap_words=5):
        prefixes = {w[0] for w in _body(chunk)}
        assert prefixes == ({"a"} if chunk.heading == "One" else {"b"})


def test_word_windows_on_empty_input_yield_one_empty_window() -> None:
    assert list(word_windows([], 20, 5)) == [[]]


@pytest.mark.parametrize("max_words, overlap_words, match", [
    (19, 0, "max_words"),
    (0, 0, "max_words"),
    (20.5, 0, "max_words"),
    (True, 0, "max_words"),
    (20, 20, "overlap_words"),
    (20, -1, "overlap_words"),
    (20, 25, "overlap_words"),
    (20, 1.5, "overlap_words"),
])
def test_bad_arguments_are_rejected(max_words: object, overlap_words: object, match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        chunk_document(_doc("text"), max_words=max_words, overlap_words=overlap_words)  # type: ignore[arg-type]


def test_smallest_allowed_arguments_work() -> None:
    chunks = chunk_document(_doc(_words("w", 25)), max_words=20, overlap_words=19)
    assert [len(_body(c)) for c in chunks] == [20, 20, 20, 20, 20, 20]
