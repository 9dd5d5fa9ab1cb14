"""Test scaffolding for the ingest tests: a small multi-source fixture and synthetic identity records."""
