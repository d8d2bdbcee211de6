"""Database access: engine (embedded or external PostgreSQL), sample schema, migrations."""
