"""CPU per FHIR read: the direct way (``fhir/direct.DirectGet``, http.client connections of
our own) against urllib3's own pool with its decoding, both through the same SSRF guard,
deadline and size cap, on kept-alive connections to a local server (another process), plain
and gzip-encoded. Issue 30 item 5 asked whether urllib3's pool and decoding could replace
direct.py; this is how it was decided (see docs/performance.md).

    .venv/bin/python bench/bench_reads.py [--reads 2000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import gzip
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SERVER = r"""
import gzip, json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
entry = [{"resource": {"resourceType": "Observation", "id": f"o{i}", "valueString": "x" * 500}}
         for i in range(30)]
body = json.dumps({"resourceType": "Bundle", "entry": entry}).encode()
packed = gzip.compress(body)
class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        data = packed if self.path.startswith("/gz/") else body
        self.send_response(200)
        self.send_header("Content-Type", "application/fhir+json")
        if data is packed:
            self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def log_message(self, *args):
        pass
server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"""
QUERY = "?patient=p1&code=http://loinc.org|53040-2"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reads", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    import urllib3

    from cds_service.fhir.limits import CHUNK, read_body
    from cds_service.fhir.reads import bounded_get
    from cds_service.fhir.session import _GuardedHTTPPool, guarded_session

    proc = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    session = guarded_session()
    pool = _GuardedHTTPPool("127.0.0.1", port, maxsize=10, timeout=urllib3.Timeout(2, 2))
    headers = {"Accept": "application/fhir+json", "Authorization": "Bearer t"}

    def direct(path: str) -> bytes:
        url = f"http://127.0.0.1:{port}{path}{QUERY}"
        deadline = time.monotonic() + 5
        return bounded_get(
            session, url, deadline=deadline, max_bytes=10_000_000, timeout=2, headers=headers
        )[1]

    def pooled(path: str) -> bytes:
        response = pool.urlopen(
            "GET",
            path + QUERY,
            headers={**headers, "Accept-Encoding": "gzip"},
            preload_content=False,
            decode_content=True,
            retries=False,
        )
        body = read_body(
            lambda: response.read1(CHUNK, decode_content=True), time.monotonic() + 5, 10_000_000
        )
        response.release_conn()
        return body

    size = len(gzip.decompress(gzip.compress(direct("/fhir/Observation"))))
    print(f"{args.reads} reads a round, {args.rounds} rounds; answer {size:,} bytes (JSON)")
    try:
        results: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.rounds):
            for name, read in (("direct (direct.py)", direct), ("urllib3 pool", pooled)):
                for path in ("/fhir/Observation", "/gz/fhir/Observation"):
                    assert json.loads(read(path))["resourceType"] == "Bundle"
                    started = time.process_time()
                    for _ in range(args.reads):
                        read(path)
                    cpu = (time.process_time() - started) / args.reads * 1e6
                    results.setdefault((name, path), []).append(cpu)
        for (name, path), cpus in results.items():
            coding = "gzip" if path.startswith("/gz/") else "identity"
            rounds = ", ".join(f"{c:.0f}" for c in cpus)
            print(f"{name:<20} {coding:<9} CPU per read: best {min(cpus):.0f} us ({rounds})")
    finally:
        proc.kill()


if __name__ == "__main__":
    main()
