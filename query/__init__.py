"""Planning: an export request checked against its entity, and the SQL it runs."""
