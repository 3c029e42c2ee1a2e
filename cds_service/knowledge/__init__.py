"""The knowledge files (``knowledge/`` at the top of the repository): their models and the
loader that validates and cross-checks them when the service starts."""
