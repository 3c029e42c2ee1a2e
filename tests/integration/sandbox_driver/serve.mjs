// Serves a build of the public CDS Hooks sandbox (static files) and, on the same origin,
// proxies /fhir/* to the test FHIR server, adding its bearer token: the sandbox is a browser
// app that sends no token and would need CORS, which the test FHIR server does not give.
//
// Usage: node serve.mjs <build dir> <port, 0 for any> <FHIR base URL> <token>
// Prints "LISTENING <port>" once ready; stops on SIGTERM or SIGINT.
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';

const [buildDir, portArg, upstreamArg, token] = process.argv.slice(2);
if (!buildDir || !upstreamArg || !token) {
  console.error('usage: node serve.mjs <build dir> <port> <FHIR base URL> <token>');
  process.exit(2);
}
const ROOT = path.resolve(buildDir);
const UPSTREAM = new URL(upstreamArg.replace(/\/+$/, ''));
const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
  '.map': 'application/json',
};

function proxy(req, res) {
  // /fhir/... here -> <FHIR base>/... ; the Host header is kept, so the server's absolute
  // links (fullUrl, next) point back through this proxy.
  const target = new URL(UPSTREAM.pathname + req.url.slice('/fhir'.length), UPSTREAM);
  const headers = { ...req.headers, authorization: `Bearer ${token}` };
  const upstream = http.request(target, { method: req.method, headers }, (answer) => {
    res.writeHead(answer.statusCode, answer.headers);
    answer.pipe(res);
  });
  upstream.on('error', (err) => {
    if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
    res.end(String(err.message));
  });
  req.pipe(upstream);
}

function serveFile(req, res) {
  const pathname = decodeURIComponent(new URL(req.url, 'http://x').pathname);
  let file = path.join(ROOT, pathname === '/' ? 'index.html' : pathname);
  if (!file.startsWith(ROOT)) {
    res.writeHead(403).end();
    return;
  }
  fs.stat(file, (err, stat) => {
    if (!err && stat.isDirectory()) file = path.join(file, 'index.html');
    fs.readFile(file, (readErr, data) => {
      if (readErr) {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
        return;
      }
      res.writeHead(200, {
        'content-type': TYPES[path.extname(file)] || 'application/octet-stream',
        'cache-control': 'no-store',
      });
      res.end(data);
    });
  });
}

const server = http.createServer((req, res) => {
  if (req.url === '/fhir' || req.url.startsWith('/fhir/') || req.url.startsWith('/fhir?')) {
    proxy(req, res);
  } else {
    serveFile(req, res);
  }
});
server.listen(Number(portArg || 0), '127.0.0.1', () => {
  process.stdout.write(`LISTENING ${server.address().port}\n`);
});
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => process.exit(0));
