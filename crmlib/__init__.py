"""crmlib."""
