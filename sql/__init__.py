"""The SQL of xfer, shipped as package data: migrations/ (numbered, never edited), queries.sql, schema.sql."""
