"""The service's database: the card log, feedback, seen client JWTs, and the schema with its
migrations."""
