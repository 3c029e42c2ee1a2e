// Takes a suggestion in the public CDS Hooks sandbox, as a tester does, in headless Chromium
// (playwright-core; the browser is the machine's, never downloaded): Rx View for a patient,
// pick a medication, wait for the service's card, click a suggestion, and report what the
// sandbox sent: the order-select before and after the click, and the feedback.
//
// Usage: node take_suggestion.mjs '<JSON options>'
//   sandbox      URL of the served sandbox (serve.mjs), e.g. http://127.0.0.1:41235
//   discovery    the service's discovery URL, e.g. http://127.0.0.1:41236/cds-services
//   chromium     path of the browser
//   patient      patient id (loaded into the FHIR server behind <sandbox>/fhir)
//   medQuery     text typed into the medication box
//   medLabel     the medication list entry to click
//   card         text of the card summary to wait for
//   suggestion   text the suggestion button starts with
//   timeout      ms per step (default 30000)
// Prints one JSON object on stdout; exit code 0 when every step ran.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { chromium } = require('playwright-core');

const options = JSON.parse(process.argv[2] || '{}');
const timeout = options.timeout || 30000;
const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]']);

function drafts(body) {
  const context = (body && body.context) || {};
  const entries = (context.draftOrders && context.draftOrders.entry) || [];
  return entries.map((e) => e.resource || {});
}

async function main() {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'pgx-sandbox-chromium-'));
  const browser = await chromium.launchPersistentContext(profile, {
    executablePath: options.chromium,
    headless: true,
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
    viewport: { width: 1600, height: 1000 },
  });
  const result = { ok: false, steps: [] };
  const exchanges = []; // every POST to the service: {url, at, request, status, response}
  const started = Date.now();
  try {
    // Loopback only: the sandbox also calls its default public discovery URL.
    await browser.route('**/*', (route) => {
      const url = new URL(route.request().url());
      return LOOPBACK.has(url.hostname) ? route.fallback() : route.abort('blockedbyclient');
    });
    const page = await browser.newPage();
    page.setDefaultTimeout(timeout);
    page.on('requestfinished', async (request) => {
      if (request.method() !== 'POST' || !request.url().startsWith(`${options.discovery}/`)) {
        return;
      }
      let status = null;
      let response = null;
      try {
        const answer = await request.response();
        status = answer ? answer.status() : null;
        response = answer ? await answer.json().catch(() => null) : null;
      } catch (e) { /* the page went away */ }
      exchanges.push({
        url: request.url(), at: Date.now() - started, request: request.postDataJSON(), status,
        response,
      });
    });
    const waitFor = async (test, after, what) => {
      const deadline = Date.now() + timeout;
      while (Date.now() < deadline) {
        const hit = exchanges.find((x) => x.at >= after && test(x));
        if (hit) return hit;
        await page.waitForTimeout(100);
      }
      throw new Error(`timed out waiting for ${what}`);
    };
    const query = new URLSearchParams({
      fhirServiceUrl: `${options.sandbox}/fhir`,
      patientId: options.patient,
      serviceDiscoveryURL: options.discovery,
      hook: 'order-select',
      screen: 'rx-view',
    });
    await page.goto(`${options.sandbox}/?${query}`);
    await page.locator('h1', { hasText: 'Rx View' }).waitFor();
    // Discovery is not awaited by the sandbox: wait until the service is registered.
    await page.waitForFunction(
      (d) => (localStorage.getItem('PERSISTED_cdsServices') || '').includes(d),
      options.discovery,
    );
    result.steps.push('rx-view');
    // fill(), not typing: the box drops keystrokes typed faster than its 150 ms debounce.
    await page.locator('input[name="medication-input"]').fill(options.medQuery);
    const picked = Date.now() - started;
    await page.getByRole('button', { name: options.medLabel, exact: true }).click();
    const before = await waitFor(
      (x) => x.request && x.request.hook === 'order-select' && x.response
        && drafts(x.request).some((r) => r.medicationCodeableConcept
          && r.medicationCodeableConcept.text === options.medLabel),
      picked - 1000,
      'the order-select with the picked medication',
    );
    result.before = before.request;
    result.cards = (before.response && before.response.cards) || [];
    await page.getByText(options.card).first().waitFor();
    result.steps.push('card');
    const button = page.getByRole('button', { name: new RegExp(`^${options.suggestion}`) }).first();
    result.clicked = (await button.innerText()).trim();
    const clicked = Date.now() - started;
    await button.click();
    const after = await waitFor(
      (x) => x.request && x.request.hook === 'order-select' && x.response,
      clicked,
      'the order-select after the suggestion',
    );
    result.after = after.request;
    result.cardsAfter = (after.response && after.response.cards) || [];
    const feedback = await waitFor((x) => x.url.endsWith('/feedback'), clicked, 'the feedback');
    result.feedback = { request: feedback.request, status: feedback.status };
    result.steps.push('suggestion taken');
    result.ok = true;
  } catch (err) {
    result.error = String((err && err.stack) || err);
    result.exchanges = exchanges.map((x) => ({ url: x.url, at: x.at, status: x.status }));
  } finally {
    await browser.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
  process.stdout.write(`${JSON.stringify(result)}\n`);
  process.exit(result.ok ? 0 : 1);
}

main().catch((err) => {
  process.stdout.write(`${JSON.stringify({ ok: false, error: String(err && err.stack) })}\n`);
  process.exit(1);
});
