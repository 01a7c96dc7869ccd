// The operators' web UIs in a real browser: a request made through the gateway as part of a
// trace this test chose (its traceparent), then an operator signs in to the logs UI
// (logs.local.test: VictoriaLogs behind the sign-in proxy and Keycloak's real login page) and
// finds that request's lines, in the gateway and in the service, by its trace id, then follows
// their link to the trace viewer (traces.local.test) and sees the request's spans; and the
// dashboards (dashboards.local.test, behind the same sign-in) show every panel with data.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { api, login, newBrowser, newPage, platform, PASSWORD, screenshot, uniqueEmail } from './platform.mjs';

/// Lines reach VictoriaLogs a second or two after they are written: the UI's query is asked
/// again until both appear, within this.
const LINES_WITHIN_MS = 30_000;

let browser;

before(async () => {
  browser = await newBrowser();
});

after(async () => {
  await browser?.close();
});

test("an operator signs in to the logs UI and finds a request's lines by its trace id", async () => {
  const { url, operations } = platform();
  assert.ok(operations?.password, 'the status document names the operator (--show-secrets)');

  // A registration through the gateway, in a trace of the test's own.
  const traceId = randomBytes(16).toString('hex');
  const traceparent = `00-${traceId}-${randomBytes(8).toString('hex')}-01`;
  const email = uniqueEmail('traced');
  const registered = await api(
    'api',
    'POST',
    '/v1/consumers',
    { email, password: PASSWORD, name: 'Traced Person', currency: 'JPY' },
    { traceparent },
  );
  assert.equal(registered.status, 201, registered.text);

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
    if (body.includes('POST api.local.test/v1/consumers 201') && body.includes('answered')) break;
    if (Date.now() - started > LINES_WITHIN_MS) break;
    // Asked again as a person would: the URL's query runs once, when the page opens it.
    await page.waitForTimeout(1_000);
    await page.getByRole('button', { name: 'Execute' }).click();
  }
  await screenshot(page, 'operations-2-logs-by-trace-id');
  assert.ok(
    body.includes('POST api.local.test/v1/consumers 201'),
    `the gateway's line of the request: ${body.slice(0, 1500)}`,
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
  let spans = 0;
  for (const started = Date.now(); Date.now() - started < LINES_WITHIN_MS; ) {
    await page.goto(traceUrl);
    await page.waitForURL((u) => u.hostname === 'traces.local.test');
    spans = await page.locator('tr.span').count();
    if (spans >= 3) break;
    await page.waitForTimeout(1_000);
  }
  await page.getByText(`Trace ${traceId}`).first().waitFor();
  await screenshot(page, 'operations-4-the-requests-trace');
  assert.ok(spans >= 3, `the trace's spans: ${spans}`);
  for (const service of ['gateway', 'consumer-api', 'orchestrator']) {
    assert.ok(await page.locator(`tr.span[data-service="${service}"]`).count() > 0, `a span of ${service}`);
  }
  const broken = page.problems.filter((p) => /ERR_CERT|ERR_NAME_NOT_RESOLVED|ERR_CONNECTION/.test(p));
  assert.deepEqual(broken, []);
  await page.context().close();
});

test('an operator signs in to the dashboards and every panel of the HTTP dashboard shows data', async () => {
  const { url, operations } = platform();
  // Requests for the HTTP dashboard to count: a registration through the gateway.
  const registered = await api('api', 'POST', '/v1/consumers', {
    email: uniqueEmail('counted'), password: PASSWORD, name: 'Counted Person', currency: 'JPY',
  });
  assert.equal(registered.status, 201, registered.text);

  const page = await newPage(browser);
  await page.goto(url('dashboards', '/'));
  await page.waitForURL(/\/protocol\/openid-connect\/auth|\/login-actions\//);
  await login(page, operations.user, operations.password);
  await page.waitForURL((u) => u.hostname === 'dashboards.local.test' && u.pathname === '/consoles/index.html');
  for (const name of ['HTTP', 'Payments', 'Kafka', 'PostgreSQL', 'Rust runtime', 'SLOs']) {
    await page.getByRole('link', { name, exact: true }).first().waitFor();
  }
  await page.getByRole('link', { name: 'HTTP', exact: true }).first().click();
  await page.waitForURL((u) => u.pathname === '/consoles/http.html');
  // Each stat is computed by Prometheus when the page is asked: "-" is a query with no answer.
  const stats = await page.locator('.paytool-value').allInnerTexts();
  assert.ok(stats.length >= 4, `the stats: ${stats}`);
  assert.ok(stats.every((v) => v.trim() !== '-'), `a stat without data: ${stats}`);
  // Each graph is drawn in the browser from Prometheus' query API: a line per series.
  const graphs = page.locator('.paytool-graph');
  const count = await graphs.count();
  assert.ok(count >= 4, `graphs: ${count}`);
  for (let i = 0; i < count; i += 1) {
    // Attached, not visible: a series that stays at 0 is a flat line, a path with no height.
    await graphs.nth(i).locator('svg path.path').first().waitFor({ state: 'attached' });
  }
  await screenshot(page, 'operations-5-http-dashboard');
  const broken = page.problems.filter((p) => /ERR_CERT|ERR_NAME_NOT_RESOLVED|ERR_CONNECTION|page error/.test(p));
  assert.deepEqual(broken, []);
  await page.context().close();
});
