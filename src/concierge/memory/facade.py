"""`Memory`: session notes, the long-term profile and its vector indexes behind one object.

Construct it from a database URL or path (SQLite file `.concierge/memory.db` by default), an
index folder (`.concierge/memory-index/`, or None to keep indexes in the process) and optionally
a notes store (`redis://...` URL or a `NotesStore`; by default the notes share the SQL database).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

from ..core.clock import Clock, SystemClock
from ..core.errors import ValidationError
from ..core.messages import Message
from ..core.sqldb import open_engine
from ..llm.base import ChatModel
from ..llm.tokens import EstimatingCounter, TokenCounter
from ..retrieval.embeddings import Embedder, MiniLMEmbedder
from .checks import MemoryPolicy, check_aware, check_budget, check_id, normalise_key
from .expiry import expired_facts
from .extract import Extraction, extract
from .index import FactIndex
from .notes import NotesStore, RedisNotesStore, SessionNotes, SqlNotesStore
from .profile import FACT_KINDS, Fact, ProfileStore
from .recall import DEFAULT_SLOTS, Recalled, Slot, contradicted, current_values, rank, within_budget

DEFAULT_DB_PATH = Path(".concierge/memory.db")
DEFAULT_INDEX_DIR = Path(".concierge/memory-index")
NOTES, FACTS, VECTORS = "memory_notes", "memory_facts", "memory_vectors"


def _db_url(db: str | Path) -> str:
    if isinstance(db, str) and "://" in db:
        return db
    if not isinstance(db, str | Path) or not str(db).strip():
        raise ValidationError(f"memory database {db!r} is neither a URL nor a path",
                              hint="pass a SQLAlchemy URL or a SQLite file path")
    return f"sqlite+aiosqlite:///{Path(db)}"


class Memory:
    def __init__(self, db: str | Path = DEFAULT_DB_PATH, index_dir: str | Path | None = DEFAULT_INDEX_DIR, *,
                 notes: NotesStore | str | None = None, embedder: Embedder | None = None,
                 counter: TokenCounter | None = None, clock: Clock | None = None,
                 policy: MemoryPolicy | None = None, policies: Mapping[str, MemoryPolicy] | None = None,
                 notes_ttl_days: float = 30.0, slots: Sequence[Slot] = DEFAULT_SLOTS) -> None:
        self.engine = open_engine(_db_url(db), "memory database")
        self.profile = ProfileStore.from_engine(self.engine)
        if notes is None:
            self.notes: NotesStore = SqlNotesStore.from_engine(self.engine)
        elif isinstance(notes, str):
            if not notes.startswith(("redis://", "rediss://", "unix://")):
                raise ValidationError(f"unsupported notes store URL {notes!r}",
                                      hint="pass redis://host:port/db, a NotesStore, or None to use the database")
            self.notes = RedisNotesStore.from_url(notes)
        elif isinstance(notes, NotesStore):
            self.notes = notes
        else:
            raise ValidationError(f"notes must be a URL, a NotesStore or None, got {type(notes).__name__}")
        self.index = FactIndex(embedder or MiniLMEmbedder(), None if index_dir is None else Path(index_dir))
        self.counter = counter or EstimatingCounter()
        self.clock = clock or SystemClock()
        self.default_policy = policy or MemoryPolicy()
        if not isinstance(self.default_policy, MemoryPolicy):
            raise ValidationError("policy must be a MemoryPolicy")
        self._policies: dict[str, MemoryPolicy] = {}
        for tenant, tenant_policy in (policies or {}).items():
            self.set_policy(tenant, tenant_policy)
        if isinstance(notes_ttl_days, bool) or not isinstance(notes_ttl_days, int | float) or notes_ttl_days <= 0:
            raise ValidationError(f"notes_ttl_days must be > 0, got {notes_ttl_days!r}")
        self.notes_ttl = timedelta(days=notes_ttl_days)
        self.slots = tuple(slots)

    # -- configuration -------------------------------------------------------------------------------

    def set_policy(self, tenant: str, policy: MemoryPolicy) -> None:
        if not isinstance(policy, MemoryPolicy):
            raise ValidationError(f"the policy of tenant {tenant!r} must be a MemoryPolicy")
        self._policies[check_id("tenant", tenant)] = policy

    def policy_for(self, tenant: str) -> MemoryPolicy:
        return self._policies.get(tenant, self.default_policy)

    # -- writing -------------------------------------------------------------------------------------

    async def remember(self, tenant: str, user_id: str, extraction: Extraction) -> list[Fact]:
        """Store an extraction: facts (upserted by key), resolved issues, notes. Returns the stored facts."""
        check_id("tenant", tenant)
        check_id("user id", user_id)
        if not isinstance(extraction, Extraction):
            raise ValidationError("remember() takes an Extraction", hint="get one from memory.extract(...)")
        now = self.clock.now()
        new = extraction.to_facts(tenant, user_id, now)
        notes = extraction.to_notes(tenant, user_id, now)
        async with self.index.lock(tenant, user_id):
            existing = await self.profile.facts(tenant, user_id)
            await self.index.ensure(tenant, user_id, existing)
            reopened = {f.key for f in new if f.kind == "issue"}
            resolving = set(extraction.resolved_keys) - reopened
            new += [replace(f, status="resolved", last_used_at=now) for f in existing
                    if f.is_open_issue and f.key in resolving]
            vectors = await self.index.embed([f.text for f in new])  # before any write: failing stores nothing
            stored, changed = await self.profile.upsert(new)
            rows = [i for i, f in enumerate(stored) if f.id in changed]
            await self.index.put(tenant, user_id, [stored[i] for i in rows], vectors[rows] if rows else None)
            await self.notes.put(notes)
        return stored

    async def remember_conversation(self, model: ChatModel, tenant: str, user_id: str, conversation_id: str,
                                    transcript: Sequence[Message]) -> Extraction:
        """Extract memories from a finished conversation and store them; ExtractionError stores nothing."""
        check_id("tenant", tenant)
        check_id("user id", user_id)
        extraction = await extract(model, transcript, conversation_id)
        await self.remember(tenant, user_id, extraction)
        return extraction

    # -- reading -------------------------------------------------------------------------------------

    async def recall(self, tenant: str, user_id: str, query: str, budget_tokens: int, *,
                     current_conversation: Sequence[Message] | None = None,
                     current_facts: Mapping[str, str] | None = None) -> list[Recalled]:
        """The user's best facts for `query`, within `budget_tokens` (counted on their context lines)."""
        check_id("tenant", tenant)
        check_id("user id", user_id)
        check_budget(budget_tokens)
        if not isinstance(query, str):
            raise ValidationError(f"recall query must be a string, got {type(query).__name__}")
        policy = self.policy_for(tenant)
        now = self.clock.now()
        current = current_values(current_conversation, self.slots, current_facts)
        async with self.index.lock(tenant, user_id):
            facts = await self.profile.facts(tenant, user_id)
            if not facts:  # nothing remembered: no embedding, no index
                return []
            await self.index.ensure(tenant, user_id, facts)
            hits = await self.index.search(tenant, user_id, query, policy.candidates) if query.strip() else []
        similarities = dict(hits)
        open_keys = {f.key for f in facts if f.is_open_issue}
        if len(facts) > len(hits) and query.strip():  # a large profile: the ANN candidates plus open issues
            facts = [f for f in facts if f.id in similarities or f.is_open_issue]
        kept = [f for f in facts if not contradicted(f, current)]
        chosen = within_budget(rank(kept, similarities, now, policy, open_keys, self.counter), budget_tokens)
        await self.profile.touch((r.fact.id for r in chosen), now)
        return chosen

    async def context_lines(self, tenant: str, user_id: str, query: str, budget_tokens: int, *,
                            conversation_id: str | None = None,
                            current_conversation: Sequence[Message] | None = None,
                            current_facts: Mapping[str, str] | None = None) -> list[str]:
        """Lines to pin into the system message: recalled facts, then the last other conversation's summary
        if it still fits. Together they use at most `budget_tokens`."""
        recalled = await self.recall(tenant, user_id, query, budget_tokens,
                                     current_conversation=current_conversation, current_facts=current_facts)
        lines = [r.line for r in recalled]
        left = budget_tokens - sum(r.tokens for r in recalled)
        for notes in await self.notes.recent(tenant, user_id, 2):
            if notes.conversation_id != conversation_id and notes.summary:
                line = (f"Previous conversation {notes.conversation_id} "
                        f"({notes.updated_at.date().isoformat()}): {notes.summary}")
                if self.counter.count(line) <= left:
                    lines.append(line)
                break
        return lines

    async def facts(self, tenant: str, user_id: str) -> list[Fact]:
        return await self.profile.facts(tenant, user_id)

    async def session_notes(self, tenant: str, user_id: str, conversation_id: str) -> SessionNotes | None:
        return await self.notes.get(tenant, user_id, conversation_id)

    # -- forgetting ----------------------------------------------------------------------------------

    async def forget(self, tenant: str, user_id: str, key: str | None = None, *, query: str | None = None,
                     kind: str | None = None, min_similarity: float = 0.5) -> list[Fact]:
        """Remove facts by exact key, or those similar to `query` (≥ min_similarity); from SQL and index.

        The key is also dropped from the preferences of the user's session notes; free-text summaries
        are not rewritten (`erase_user` removes everything)."""
        check_id("tenant", tenant)
        check_id("user id", user_id)
        if (key is None) == (query is None):
            raise ValidationError("forget() needs exactly one of key= or query=",
                                  hint="e.g. forget(t, u, 'phone_number') or forget(t, u, query='my phone number')")
        if kind is not None and kind not in FACT_KINDS:
            raise ValidationError(f"kind {kind!r} is not one of {', '.join(FACT_KINDS)}")
        if query is not None and (not isinstance(query, str) or not query.strip()):
            raise ValidationError("forget() query must be a non-empty string")
        wanted = None if key is None else normalise_key(key)
        async with self.index.lock(tenant, user_id):
            facts = await self.profile.facts(tenant, user_id)
            await self.index.ensure(tenant, user_id, facts)
            if wanted is not None:
                doomed = [f for f in facts if f.key == wanted]
            else:
                assert query is not None
                close = {i for i, sim in await self.index.search(tenant, user_id, query, len(facts) or 1)
                         if sim >= min_similarity}
                doomed = [f for f in facts if f.id in close]
            doomed = [f for f in doomed if kind is None or f.kind == kind]
            await self.profile.delete(f.id for f in doomed)
            self.index.remove(tenant, user_id, [f.id for f in doomed])
            keys = {f.key for f in doomed if f.kind == "preference"}
            if keys:
                for notes in await self.notes.recent(tenant, user_id, 10_000):
                    if keys & notes.preferences.keys():
                        kept = {k: v for k, v in notes.preferences.items() if k not in keys}
                        await self.notes.put(replace(notes, preferences=kept))
        return doomed

    async def expire(self, now: datetime | None = None) -> dict[str, int]:
        """Remove notes older than the notes TTL and facts past retention/expires_at not linked to an open issue."""
        now = self.clock.now() if now is None else check_aware("now", now)
        removed = {NOTES: await self.notes.expire(now - self.notes_ttl), FACTS: 0, VECTORS: 0}
        shortest = min([self.default_policy.retention, *(p.retention for p in self._policies.values())])
        candidates = await self.profile.all_facts(created_before=now - shortest, expiring_by=now)
        users = sorted({(f.tenant, f.user_id) for f in candidates})
        for tenant, user_id in users:
            async with self.index.lock(tenant, user_id):
                facts = await self.profile.facts(tenant, user_id)  # fresh, under the lock
                await self.index.ensure(tenant, user_id, facts)
                open_keys = {f.key for f in facts if f.is_open_issue}
                doomed = expired_facts(facts, now, self.policy_for, {(tenant, user_id): open_keys})
                removed[FACTS] += await self.profile.delete(f.id for f in doomed)
                removed[VECTORS] += self.index.remove(tenant, user_id, [f.id for f in doomed])
        return removed

    async def erase_user(self, tenant: str, user: str) -> dict[str, int]:
        """Delete everything memory holds about one user; returns how many records each store removed."""
        check_id("tenant", tenant)
        check_id("user id", user)
        async with self.index.lock(tenant, user):
            return {NOTES: await self.notes.delete_user(tenant, user),
                    FACTS: await self.profile.delete_user(tenant, user),
                    VECTORS: self.index.drop(tenant, user)}

    async def count_user(self, tenant: str, user: str) -> dict[str, int]:
        """How many records each store holds about one user (the keys of `erase_user`)."""
        check_id("tenant", tenant)
        check_id("user id", user)
        async with self.index.lock(tenant, user):
            facts = await self.profile.facts(tenant, user)
            if facts:
                await self.index.ensure(tenant, user, facts)
            return {NOTES: await self.notes.count_user(tenant, user), FACTS: len(facts),
                    VECTORS: self.index.count(tenant, user)}

    async def close(self) -> None:
        await self.notes.close()
        await self.engine.dispose()
