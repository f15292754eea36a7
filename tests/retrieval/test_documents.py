"""Documents: validation, file loading (front matter, HTML, encodings, limits) and the retail knowledge base."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from concierge.core.errors import ValidationError
from concierge.domains import retail
from concierge.retrieval.chunking import chunk_document
from concierge.retrieval.documents import (
    MAX_DOCUMENT_BYTES,
    Document,
    default_doc_id,
    html_to_text,
    load_document,
    load_folder,
)

KNOWLEDGE = Path(retail.__file__).parent / "knowledge"


def _doc(**fields: object) -> Document:
    base: dict[str, object] = {"tenant": "acme", "doc_id": "returns", "text": "Some text."}
    base.update(fields)
    return Document(**base)  # type: ignore[arg-type]


# --- Document validation ---------------------------------------------------------------------------


def test_defaults_are_sensible() -> None:
    doc = _doc()
    assert (doc.version, doc.visibility, doc.authority, doc.format, doc.title, doc.source) == (
        1, "public", 1.0, "markdown", "", None)
    assert doc.updated_at.tzinfo is not None
    assert abs(datetime.now(UTC) - doc.updated_at) < timedelta(minutes=1)


@pytest.mark.parametrize("field", ["tenant", "doc_id"])
@pytest.mark.parametrize("value", ["", "Upper", "-leading", "has space", "a" * 65, "slash/inside"])
def test_bad_identifiers_name_the_field(field: str, value: str) -> None:
    with pytest.raises(ValidationError, match=field):
        _doc(**{field: value})


def test_good_identifiers_pass() -> None:
    doc = _doc(tenant="acme-eu.2", doc_id="returns_electronics.v2")
    assert doc.doc_id == "returns_electronics.v2"
    assert _doc(doc_id="a" * 64).doc_id == "a" * 64


@pytest.mark.parametrize("text", ["", "   \n\t "])
def test_blank_text_is_rejected(text: str) -> None:
    with pytest.raises(ValidationError, match="no text"):
        _doc(text=text)


@pytest.mark.parametrize("version", [0, -1, True, 1.5])
def test_bad_version_is_rejected(version: object) -> None:
    with pytest.raises(ValidationError, match="version"):
        _doc(version=version)


@pytest.mark.parametrize("authority", [-0.01, 1.01, float("nan"), "high"])
def test_authority_must_be_between_zero_and_one(authority: object) -> None:
    with pytest.raises(ValidationError, match="authority"):
        _doc(authority=authority)


def test_authority_bounds_are_inclusive() -> None:
    assert _doc(authority=0).authority == 0.0
    assert _doc(authority=1).authority == 1.0


def test_visibility_and_format_are_checked() -> None:
    with pytest.raises(ValidationError, match="visibility"):
        _doc(visibility="secret")
    with pytest.raises(ValidationError, match="format"):
        _doc(format="pdf")


def test_updated_at_must_be_aware_and_becomes_utc() -> None:
    with pytest.raises(ValidationError, match="timezone"):
        _doc(updated_at=datetime(2025, 1, 1))
    doc = _doc(updated_at=datetime(2025, 1, 1, 12, tzinfo=timezone(timedelta(hours=2))))
    assert doc.updated_at == datetime(2025, 1, 1, 10, tzinfo=UTC)
    assert doc.updated_at.utcoffset() == timedelta(0)


def test_oversized_text_says_size_and_limit() -> None:
    text = "x" * (MAX_DOCUMENT_BYTES + 1)
    with pytest.raises(ValidationError) as caught:
        _doc(text=text)
    message = str(caught.value)
    assert f"{MAX_DOCUMENT_BYTES + 1:,}" in message and f"{MAX_DOCUMENT_BYTES:,}" in message


def test_text_at_the_limit_is_accepted() -> None:
    assert len(_doc(text="x" * MAX_DOCUMENT_BYTES).text) == MAX_DOCUMENT_BYTES


def test_documents_are_frozen() -> None:
    doc = _doc()
    with pytest.raises(AttributeError):
        doc.text = "changed"  # type: ignore[misc]


# --- loading files ---------------------------------------------------------------------------------


def test_front_matter_sets_metadata(tmp_path: Path) -> None:
    path = tmp_path / "Whatever.md"
    path.write_text("---\ndoc_id: returns-electronics\ntitle: \"Returning electronics\"\nversion: 2\n"
                    "updated_at: 2025-09-01\nvisibility: internal\nauthority: 0.5\n---\n# Window\n30 days.\n",
                    encoding="utf-8")
    doc = load_document(path, "acme")
    assert doc.doc_id == "returns-electronics"
    assert doc.title == "Returning electronics"
    assert doc.version == 2
    assert doc.updated_at == datetime(2025, 9, 1, tzinfo=UTC)
    assert doc.visibility == "internal"
    assert doc.authority == 0.5
    assert doc.format == "markdown"
    assert doc.source == str(path)
    assert doc.text == "# Window\n30 days.\n"


def test_front_matter_accepts_datetimes_and_text_files(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("---\nupdated_at: 2025-03-01T09:30:00+02:00\n---\nplain words\n", encoding="utf-8")
    doc = load_document(path, "acme")
    assert doc.format == "text"
    assert doc.updated_at == datetime(2025, 3, 1, 7, 30, tzinfo=UTC)
    assert doc.doc_id == "notes"


def test_overrides_win_over_front_matter(tmp_path: Path) -> None:
    path = tmp_path / "a.md"
    path.write_text("---\nversion: 2\n---\nbody\n", encoding="utf-8")
    assert load_document(path, "acme", version=5, title="T").version == 5
    with pytest.raises(ValidationError, match="colour"):
        load_document(path, "acme", colour="red")


@pytest.mark.parametrize("front, match", [
    ("version: two", "version"),
    ("authority: lots", "authority"),
    ("updated_at: yesterday", "ISO"),
    ("colour: red", "unexpected front matter"),
    ("no colon here", "unexpected front matter"),
    ("visibility: secret", "visibility"),
])
def test_bad_front_matter_names_the_file(tmp_path: Path, front: str, match: str) -> None:
    path = tmp_path / "bad.md"
    path.write_text(f"---\n{front}\n---\nbody\n", encoding="utf-8")
    with pytest.raises(ValidationError, match=match) as caught:
        load_document(path, "acme")
    assert "bad.md" in str(caught.value)


def test_unclosed_front_matter_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "open.md"
    path.write_text("---\ntitle: x\nbody without end\n", encoding="utf-8")
    with pytest.raises(ValidationError, match="never ends"):
        load_document(path, "acme")


def test_file_without_front_matter_gets_a_derived_doc_id(tmp_path: Path) -> None:
    path = tmp_path / "Return Policy (EU).md"
    path.write_text("# Returns\nbody\n", encoding="utf-8")
    doc = load_document(path, "acme")
    assert doc.doc_id == "return-policy--eu-"
    assert default_doc_id(Path("_Hidden Name.md")) == "hidden-name"


def test_unsupported_suffix_lists_the_supported_ones(tmp_path: Path) -> None:
    path = tmp_path / "manual.pdf"
    path.write_bytes(b"%PDF")
    with pytest.raises(ValidationError) as caught:
        load_document(path, "acme")
    message = str(caught.value)
    assert "manual.pdf" in message and ".md" in message and ".html" in message and ".txt" in message


def test_undecodable_bytes_name_the_file_and_offset(tmp_path: Path) -> None:
    path = tmp_path / "latin1.md"
    path.write_bytes(b"Caf\xe9 opening hours")
    with pytest.raises(ValidationError) as caught:
        load_document(path, "acme")
    message = str(caught.value)
    assert "latin1.md" in message and "byte offset 3" in message


def test_oversized_file_is_rejected_before_reading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "huge.txt"
    with path.open("wb") as handle:
        handle.truncate(MAX_DOCUMENT_BYTES + 10)  # sparse: big on paper, nothing to read

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the file must not be opened")

    monkeypatch.setattr(Path, "open", refuse)
    with pytest.raises(ValidationError) as caught:
        load_document(path, "acme")
    message = str(caught.value)
    assert "huge.txt" in message and f"{MAX_DOCUMENT_BYTES:,}" in message


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="cannot read"):
        load_document(tmp_path / "absent.md", "acme")


def test_invalid_document_from_a_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.md"
    path.write_text("---\ntitle: x\n---\n   \n", encoding="utf-8")
    with pytest.raises(ValidationError, match="empty.md.*no text"):
        load_document(path, "acme")


def test_utf8_bom_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "bom.md"
    path.write_bytes("\ufeff---\nversion: 3\n---\nbody\n".encode())
    assert load_document(path, "acme").version == 3


HTML = """<!doctype html><html><head><title>Shipping &amp; delivery</title>
<style>body { color: red }</style><script>var secret = "do not index";</script></head>
<body><h1>Shipping</h1><p>We ship   to the
United States.</p><h2>Express</h2><p>Express costs <b>$14.99</b>.</p>
<noscript>enable javascript</noscript><ul><li>fast</li><li>tracked</li></ul></body></html>"""


def test_html_extraction_keeps_headings_and_drops_scripts() -> None:
    title, text = html_to_text(HTML)
    assert title == "Shipping & delivery"
    assert "# Shipping" in text.splitlines()
    assert "## Express" in text.splitlines()
    assert "We ship to the United States." in text
    assert "Express costs $14.99." in text
    assert "fast" in text.splitlines() and "tracked" in text.splitlines()
    for hidden in ("secret", "color: red", "enable javascript", "<"):
        assert hidden not in text


def test_html_file_loads_with_title_and_chunks_by_heading(tmp_path: Path) -> None:
    path = tmp_path / "shipping.htm"
    path.write_text(HTML, encoding="utf-8")
    doc = load_document(path, "acme")
    assert doc.format == "html" and doc.title == "Shipping & delivery"
    headings = [chunk.heading for chunk in chunk_document(doc)]
    assert headings == ["Shipping", "Shipping > Express"]


def test_html_front_matter_lines_are_not_parsed(tmp_path: Path) -> None:
    path = tmp_path / "page.html"
    path.write_text("<p>---</p><p>version: 9</p><p>---</p><p>text</p>", encoding="utf-8")
    assert load_document(path, "acme").version == 1


def test_load_folder_sorts_skips_and_names_broken_files(tmp_path: Path) -> None:
    (tmp_path / "b.md").write_text("bee", encoding="utf-8")
    (tmp_path / "a.txt").write_text("ay", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.html").write_text("<p>sea</p>", encoding="utf-8")
    (tmp_path / "notes.json").write_text("{}", encoding="utf-8")
    (tmp_path / ".hidden.md").write_text("no", encoding="utf-8")
    docs = load_folder(tmp_path, "acme")
    assert [d.doc_id for d in docs] == ["a", "b", "c"]
    (tmp_path / "broken.md").write_bytes(b"\xff\xfe")
    with pytest.raises(ValidationError, match="broken.md"):
        load_folder(tmp_path, "acme")
    with pytest.raises(ValidationError, match="not a folder"):
        load_folder(tmp_path / "b.md", "acme")


# --- the retail knowledge base ---------------------------------------------------------------------


def _body_words(doc: Document) -> int:
    return len(doc.text.split())


@pytest.fixture(scope="module")
def knowledge() -> list[Document]:
    return load_folder(KNOWLEDGE, "retail")


def test_knowledge_folder_loads_every_file(knowledge: list[Document]) -> None:
    files = sorted(p for p in KNOWLEDGE.iterdir() if p.suffix == ".md")
    assert len(knowledge) == len(files) >= 10
    assert [d.source for d in knowledge] == [str(p) for p in files]
    assert len({d.doc_id for d in knowledge}) >= 10
    for doc in knowledge:
        assert doc.title, doc.source
        assert 150 <= _body_words(doc) <= 500, (doc.source, _body_words(doc))
        assert any(line.startswith("## ") for line in doc.text.splitlines()), doc.source


def test_knowledge_has_superseded_pairs(knowledge: list[Document]) -> None:
    by_id: dict[str, list[Document]] = {}
    for doc in knowledge:
        by_id.setdefault(doc.doc_id, []).append(doc)
    pairs = {doc_id: sorted(docs, key=lambda d: d.version) for doc_id, docs in by_id.items() if len(docs) > 1}
    assert len(pairs) >= 3
    assert {"returns-electronics", "returns-clothing", "refunds", "shipping"} <= set(pairs)
    for doc_id, (old, new) in pairs.items():
        assert (old.version, new.version) == (1, 2), doc_id
        assert old.updated_at < new.updated_at, doc_id
        assert old.text != new.text, doc_id
        assert Path(old.source or "").name == f"{doc_id}.v1.md"
    electronics_old, electronics_new = pairs["returns-electronics"]
    assert "14 days of delivery" in electronics_old.text and "30 days of delivery" in electronics_new.text


def test_knowledge_has_internal_and_public_documents(knowledge: list[Document]) -> None:
    assert {d.visibility for d in knowledge} == {"public", "internal"}


# --- the grounding question set --------------------------------------------------------------------


def _norm(text: str) -> str:
    return " ".join(text.split()).lower()


@pytest.fixture(scope="module")
def questions() -> list[dict[str, object]]:
    return json.loads((KNOWLEDGE / "questions.json").read_text(encoding="utf-8"))


def test_questions_schema_and_counts(questions: list[dict[str, object]]) -> None:
    assert len(questions) >= 66
    assert len({q["id"] for q in questions}) == len(questions)
    assert len({_norm(str(q["question"])) for q in questions}) == len(questions)
    kinds = Counter(q["kind"] for q in questions)
    assert set(kinds) == {"answerable", "unanswerable", "newest_version"}
    assert kinds["answerable"] >= 24 and kinds["unanswerable"] >= 24 and kinds["newest_version"] >= 18
    for q in questions:
        assert set(q) == {"id", "question", "kind", "doc_id", "answer_contains"}, q
        assert isinstance(q["question"], str) and q["question"].strip()
        if q["kind"] == "unanswerable":
            assert q["doc_id"] is None and q["answer_contains"] is None, q
        else:
            assert isinstance(q["doc_id"], str) and isinstance(q["answer_contains"], str), q


def test_expected_answers_are_in_a_chunk_of_the_current_version(
        questions: list[dict[str, object]], knowledge: list[Document]) -> None:
    current: dict[str, Document] = {}
    superseded: dict[str, Document] = {}
    for doc in sorted(knowledge, key=lambda d: d.version):
        if doc.doc_id in current:
            superseded[doc.doc_id] = current[doc.doc_id]
        current[doc.doc_id] = doc
    for q in questions:
        if q["kind"] == "unanswerable":
            continue
        doc_id, answer = str(q["doc_id"]), _norm(str(q["answer_contains"]))
        assert doc_id in current, q
        chunks = chunk_document(current[doc_id])
        assert any(answer in _norm(chunk.text) for chunk in chunks), q
        if q["kind"] == "newest_version":
            assert doc_id in superseded, q
            assert answer not in _norm(superseded[doc_id].text), q


def test_newest_version_questions_cover_several_documents(questions: list[dict[str, object]]) -> None:
    covered = Counter(q["doc_id"] for q in questions if q["kind"] == "newest_version")
    assert len(covered) >= 3
