"""The yardstick for ``bench_load.py``: a Flask app that parses a hook request's body and
answers an empty card list, served by gunicorn exactly as ``pgx-cds serve`` serves the
service. What the service costs beyond this is the service's own work."""

from __future__ import annotations

import json

from flask import Flask, Response, jsonify, request

app = Flask(__name__)


@app.post("/cds-services/<service_id>")
def call(service_id: str) -> Response:
    json.loads(request.get_data())
    return jsonify({"cards": []})
