"""The HTTP edge: the Flask app and its routes, the production server, client JWTs,
discovery, metrics and logs."""
