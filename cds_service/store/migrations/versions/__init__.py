"""One file per schema revision, chained by ``down_revision``."""
