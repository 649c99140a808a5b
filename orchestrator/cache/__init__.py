"""The local cache: JSON records in diskcache (the only importer of diskcache)."""
