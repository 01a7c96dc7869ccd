// The operators' web UIs in a real browser: a QR payment made through the gateway as part of a
// trace this test chose (its traceparent), then an operator signs in to the logs UI
// (logs.local.test: VictoriaLogs behind the sign-in proxy and Keycloak's real login page) and
// finds that payment's lines, in the gateway and in the services, by its trace id, then follows
// their link to the trace viewer (traces.local.test) and sees the payment's spans; and after
// a few payments the dashboards (dashboards.local.test, behind the same sign-in) show them,
// with every panel answered.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { login, newBrowser, newPage, platform, qrPayments, screenshot, verifyLedger } from './platform.mjs';

/// Lines reach VictoriaLogs a second or two after they are written: the UI's query is asked
/// again until both appear, within this.
const LINES_WITHIN_MS = 30_000;
/// Prometheus scrapes every 15 s: a dashboard shows a payment within two scrapes and a bit.
const SCRAPED_WITHIN_MS = 40_000;

let browser;

before(async () => {
  browser = await newBrowser();
});

after(async () => {
  await browser?.close();
});

test("an operator signs in to the logs UI, finds a payment's lines by its trace id and opens its trace", async () => {
  const { url, operations } = platform();
  assert.ok(operations?.password, 'the status document names the operator (--show-secrets)');

  // A QR payment through the gateway, in a trace of the test's own.
  const traceId = randomBytes(16).toString('hex');
  const traceparent = `00-${traceId}-${randomBytes(8).toString('hex')}-01`;
  const [payment] = await qrPayments([700], { payHeaders: { traceparent } });
  assert.equal(payment.status, 'completed');

  // The UI sends an unknown browser to Keycloak's login page, and back once signed in.
  const page = await newPage(browser);
  const ui = url('logs', '/select/vmui/');
  await page.goto(ui);
  await page.waitForURL(/\/protocol\/openid-connect\/auth|\/login-actions\//);
  await screenshot(page, 'operations-1-logs-sign-in');
  await login(page, operations.user, operations.password);
  await page.waitForURL((u) => u.hostname === 'logs.local.test');

  // The search, as a person would bookmark it: the query in the UI's own URL.
  const query = `trace_id:${traceId}`;
  const search = `${ui}#/?query=${encodeURIComponent(query)}&g0.range_input=1h`;
  const started = Date.now();
  await page.goto(search);
  await page.getByRole('button', { name: 'Execute' }).waitFor();
  let body = '';
  for (;;) {
    await page.waitForLoadState('networkidle');
    body = await page.locator('body').innerText();
    if (body.includes('POST api.local.test/v1/payments 201') && body.includes('answered')) break;
    if (Date.now() - started > LINES_WITHIN_MS) break;
    // Asked again as a person would: the URL's query runs once, when the page opens it.
    await page.waitForTimeout(1_000);
    await page.getByRole('button', { name: 'Execute' }).click();
  }
  await screenshot(page, 'operations-2-logs-by-trace-id');
  assert.ok(
    body.includes('POST api.local.test/v1/payments 201'),
    `the gateway's line of the payment: ${body.slice(0, 1500)}`,
  );
  // Each line's fields: which component wrote it, and the trace it belongs to.
  await page.getByText('JSON', { exact: true }).click();
  await page.getByText('"service.name"').first().waitFor();
  const fields = await page.locator('body').innerText();
  await screenshot(page, 'operations-3-the-lines-fields');
  assert.match(fields, /"service\.name":\s*"gateway"/, fields.slice(0, 2000));
  assert.match(fields, /"service\.name":\s*"consumer-api"/, fields.slice(0, 2000));
  assert.ok(fields.includes(`"trace_id": "${traceId}"`), `the lines carry the trace id: ${fields.slice(0, 2000)}`);
  // Each line links to its trace in the trace viewer; the operator opens it (Keycloak's
  // session signs them in there without the form).
  const traceUrl = url('traces', `/traces/${traceId}`);
  assert.ok(fields.includes(`"trace_url": "${traceUrl}"`), `the lines link to their trace: ${fields.slice(0, 2000)}`);
  // Each service exports its spans in batches of its own (a few seconds apart at most), so the
  // trace is asked for again until every service of the payment's path has reported.
  const services = ['gateway', 'consumer-api', 'merchant-api', 'orchestrator'];
  let missing = services;
  for (const started = Date.now(); Date.now() - started < LINES_WITHIN_MS; ) {
    await page.goto(traceUrl);
    await page.waitForURL((u) => u.hostname === 'traces.local.test');
    missing = [];
    for (const service of services) {
      if ((await page.locator(`tr.span[data-service="${service}"]`).count()) === 0) missing.push(service);
    }
    if (missing.length === 0) break;
    await page.waitForTimeout(1_000);
  }
  await page.getByText(`Trace ${traceId}`).first().waitFor();
  await screenshot(page, 'operations-4-the-requests-trace');
  assert.deepEqual(missing, [], `every service of the payment's path has a span in its trace`);
  const broken = page.problems.filter((p) => /ERR_CERT|ERR_NAME_NOT_RESOLVED|ERR_CONNECTION/.test(p));
  assert.deepEqual(broken, []);
  await page.context().close();
});

test('after a few payments an operator sees every panel of the payments and HTTP dashboards with data', async () => {
  const { url, operations } = platform();
  // Three QR payments through the gateway, as the demo makes them.
  const payments = await qrPayments([1200, 800, 450]);
  assert.deepEqual(payments.map((p) => p.status), ['completed', 'completed', 'completed']);
  const ledger = verifyLedger();
  assert.equal(ledger.exitCode, 0, JSON.stringify(ledger.report.checks.filter((c) => !c.ok)));
  assert.equal(ledger.report.ok, true);

  const page = await newPage(browser);
  await page.goto(url('dashboards', '/'));
  await page.waitForURL(/\/protocol\/openid-connect\/auth|\/login-actions\//);
  await login(page, operations.user, operations.password);
  await page.waitForURL((u) => u.hostname === 'dashboards.local.test' && u.pathname === '/consoles/index.html');
  for (const name of ['HTTP', 'Payments', 'Kafka', 'PostgreSQL', 'Rust runtime', 'SLOs']) {
    await page.getByRole('link', { name, exact: true }).first().waitFor();
  }

  // The payments dashboard counts them once Prometheus has scraped the orchestrator after
  // them (its interval, at most 15 s): the page is asked again until it does.
  await page.getByRole('link', { name: 'Payments', exact: true }).first().click();
  await page.waitForURL((u) => u.pathname === '/consoles/payments.html');
  let completed = 0;
  for (const started = Date.now(); Date.now() - started < SCRAPED_WITHIN_MS; ) {
    const text = await page.locator('[data-panel="payments_completed"] .paytool-value').innerText();
    completed = Number(text.trim());
    if (completed > 0) break;
    await page.waitForTimeout(2_000);
    await page.reload();
  }
  assert.ok(completed > 0, `payments completed on the dashboard: ${completed}`);
  await expectEveryPanelWithData(page);
  await screenshot(page, 'operations-5-payments-dashboard');

  await page.getByRole('link', { name: 'HTTP', exact: true }).first().click();
  await page.waitForURL((u) => u.pathname === '/consoles/http.html');
  await expectEveryPanelWithData(page);
  await screenshot(page, 'operations-6-http-dashboard');
  const broken = page.problems.filter((p) => /ERR_CERT|ERR_NAME_NOT_RESOLVED|ERR_CONNECTION|page error/.test(p));
  assert.deepEqual(broken, []);
  await page.context().close();
});

/// Every stat answered (computed by Prometheus when the page is asked: "-" is a query with no
/// answer) and every graph drawn with its lines named (drawn in the browser from Prometheus'
/// query API; a line without a name would read "undefined" in the legend).
async function expectEveryPanelWithData(page) {
  const stats = await page.locator('.paytool-value').allInnerTexts();
  assert.ok(stats.length >= 4, `the stats: ${stats}`);
  assert.ok(stats.every((v) => v.trim() !== '-'), `a stat without data: ${stats}`);
  const graphs = page.locator('.paytool-graph');
  const count = await graphs.count();
  assert.ok(count >= 4, `graphs: ${count}`);
  for (let i = 0; i < count; i += 1) {
    // Attached, not visible: a series that stays at 0 is a flat line, a path with no height.
    await graphs.nth(i).locator('svg path.path').first().waitFor({ state: 'attached' });
  }
  const legends = await page.locator('.paytool-graph .rickshaw_legend').allInnerTexts();
  assert.ok(legends.length >= count, `a legend for each graph: ${legends.length} of ${count}`);
  assert.ok(!legends.join('\n').includes('undefined'), `a line without a name: ${legends.join(' | ')}`);
}
