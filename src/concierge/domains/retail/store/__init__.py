"""The retail store's database: normalised tables, money in cents, and tau2-format import/export."""

from .money import from_cents, to_cents
from .schema import TABLES, create_schema, create_store_engine, metadata
from .tau2_io import (
    ImportCounts,
    canonical_hash,
    export_db,
    import_db,
    import_tau2_folder,
    load_tau2_db,
    read_policy,
)

__all__ = [
    "TABLES",
    "ImportCounts",
    "canonical_hash",
    "create_schema",
    "create_store_engine",
    "export_db",
    "from_cents",
    "import_db",
    "import_tau2_folder",
    "load_tau2_db",
    "metadata",
    "read_policy",
    "to_cents",
]
