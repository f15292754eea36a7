"""Memory across conversations: session notes (medium term) and a long-term profile with decay-weighted recall.

See docs/memory.md. The runtime pins `await memory.context_lines(...)` into the context and calls
`await memory.remember_conversation(...)` after a conversation ends.
"""

from .checks import MemoryPolicy
from .extract import EXTRACTION_PROMPT, ExtractedMemory, Extraction, ExtractionError, extract
from .facade import DEFAULT_DB_PATH, DEFAULT_INDEX_DIR, Memory
from .notes import NotesStore, RedisNotesStore, SessionNotes, SqlNotesStore
from .profile import Fact, FactKind
from .recall import DEFAULT_SLOTS, Recalled, Slot, recency, score

__all__ = [
    "DEFAULT_DB_PATH",
    "DEFAULT_INDEX_DIR",
    "DEFAULT_SLOTS",
    "EXTRACTION_PROMPT",
    "ExtractedMemory",
    "Extraction",
    "ExtractionError",
    "Fact",
    "FactKind",
    "Memory",
    "MemoryPolicy",
    "NotesStore",
    "Recalled",
    "RedisNotesStore",
    "SessionNotes",
    "Slot",
    "SqlNotesStore",
    "extract",
    "recency",
    "score",
]
