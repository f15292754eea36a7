"""A retail reference business faithful to tau2-bench's retail domain: its store, importable from tau2 data."""

from .store import (
    ImportCounts,
    canonical_hash,
    create_schema,
    create_store_engine,
    export_db,
    from_cents,
    import_db,
    import_tau2_folder,
    load_tau2_db,
    read_policy,
    to_cents,
)

__all__ = [
    "ImportCounts",
    "canonical_hash",
    "create_schema",
    "create_store_engine",
    "export_db",
    "from_cents",
    "import_db",
    "import_tau2_folder",
    "load_tau2_db",
    "read_policy",
    "to_cents",
]
