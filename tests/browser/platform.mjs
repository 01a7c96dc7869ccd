// The running test platform as a browser test sees it: where its gateway is (from the
// `paytool status --json --show-secrets` document that PAYTOOL_TEST_STATUS names), users made
// through its APIs, and Debian's Chromium (driven by playwright-core) that trusts the
// installation's own certificate and nothing else it would not trust anyway.
//
// Chromium reaches the gateway's names on loopback through --host-resolver-rules, so
// /etc/hosts need not have them. It is told to accept exactly the installation's leaf
// certificate (--ignore-certificate-errors-spki-list with that key's SHA-256), after this
// module has checked that the leaf was issued by the installation's CA; every other
// certificate error still fails the page (ignoreHTTPSErrors stays false).
//
// Run (scripts/test.sh does this after `cargo test --workspace`):
//   scripts/browser-setup.sh                         # chromium (apt-get) and playwright-core (npm ci)
//   PAYTOOL_TEST_STATUS=/tmp/pt/status.json node --test tests/browser/
// Screenshots go to target/browser-artifacts (PAYTOOL_BROWSER_ARTIFACTS overrides). A new test
// is a `*.test.mjs` file here: newBrowser() once, newPage() per test, register users with
// registerConsumer()/registerMerchant(), pay with qrPayments(), sign in with login() where
// Keycloak's page shows.

import { chromium } from 'playwright-core';
import { spawnSync } from 'node:child_process';
import { X509Certificate, createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const STATUS_ENV = 'PAYTOOL_TEST_STATUS';
export const CHROMIUM_PATH = '/usr/bin/chromium';
export const PASSWORD = 'correct horse battery staple';
/// Bound for one API request of the helpers (registration answers in well under a second).
const API_TIMEOUT_MS = 15_000;
/// Browser actions wait at most this long for a page or an element: Keycloak's first page
/// after a start is the slowest thing seen, at a few seconds.
export const ACTION_TIMEOUT_MS = 20_000;
/// The helpers' API calls come from their own loopback address, so that the gateway's
/// per-address registration limit counts them apart from the Rust suites sharing the platform.
const SOURCE_ADDRESS = process.env.PAYTOOL_BROWSER_SOURCE_ADDRESS ?? '127.0.0.51';

const here = dirname(fileURLToPath(import.meta.url));
const checkout = resolve(here, '..', '..');
export const ARTIFACTS_DIR = resolve(
  process.env.PAYTOOL_BROWSER_ARTIFACTS ?? join(checkout, 'target', 'browser-artifacts'),
);

let cached;

/// The platform: gateway port, realm, CA and certificate paths, home.
export function platform() {
  if (cached) return cached;
  const path = process.env[STATUS_ENV];
  if (!path) {
    throw new Error(
      `${STATUS_ENV} is not set: run the browser tests through scripts/test.sh, which starts a test platform`,
    );
  }
  const status = JSON.parse(readFileSync(path, 'utf8'));
  if (!status.running) throw new Error(`the platform at ${status.home} is not running`);
  const home = status.home;
  const port = status.gateway.https_port;
  cached = {
    home,
    port,
    realm: status.connections.keycloak_realm,
    caPath: status.gateway.ca_certificate,
    // What `paytool tls init` writes beside the CA: the *.local.test leaf the gateway serves.
    certPath: join(home, 'tls', 'local.test.pem'),
    url: (host, path = '/') => `https://${host}.local.test:${port}${path}`,
    // The operators' web UIs and the account that signs in to them (`--show-secrets`).
    operations: status.connections.operations,
  };
  return cached;
}

/// base64(SHA-256(SubjectPublicKeyInfo)) of the gateway's leaf certificate, as Chromium's
/// --ignore-certificate-errors-spki-list wants it, once the leaf is checked against the CA.
export function leafSpkiHash() {
  const { caPath, certPath } = platform();
  const ca = new X509Certificate(readFileSync(caPath));
  const leaf = new X509Certificate(readFileSync(certPath));
  if (!leaf.checkIssued(ca) || !leaf.verify(ca.publicKey)) {
    throw new Error(`${certPath} was not issued by the installation's CA ${caPath}`);
  }
  const spki = leaf.publicKey.export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(spki).digest('base64');
}

/// One JSON request to the platform through its gateway, trusting only its CA.
export function api(host, method, path, body, extraHeaders = {}) {
  const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  return request(host, method, path, payload, 'application/json', extraHeaders);
}

/// One request through the gateway with a body of the given type, trusting only its CA.
function request(host, method, path, payload, contentType, extraHeaders) {
  const { port, caPath } = platform();
  const servername = `${host}.local.test`;
  return new Promise((done, failed) => {
    const req = httpsRequest(
      {
        host: '127.0.0.1',
        port,
        servername,
        method,
        path,
        ca: readFileSync(caPath),
        localAddress: SOURCE_ADDRESS,
        timeout: API_TIMEOUT_MS,
        headers: {
          host: `${servername}:${port}`,
          accept: 'application/json',
          ...(payload ? { 'content-type': contentType, 'content-length': payload.length } : {}),
          ...extraHeaders,
        },
      },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json;
          try {
            json = text ? JSON.parse(text) : null;
          } catch {
            json = undefined;
          }
          done({ status: res.statusCode, headers: res.headers, json, text });
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${method} ${servername}${path}: no answer in ${API_TIMEOUT_MS} ms`)));
    req.on('error', failed);
    req.end(payload);
  });
}

/// A unique address on the reserved example.test domain.
export function uniqueEmail(prefix) {
  return `${prefix}-${randomBytes(5).toString('hex')}@example.test`;
}

/// A consumer registered as the wallet app does (POST /v1/consumers); returns the login and
/// the answer.
export async function registerConsumer({ name = 'Browser Tester', currency = 'JPY' } = {}) {
  const email = uniqueEmail('browser');
  const answer = await api('api', 'POST', '/v1/consumers', { email, password: PASSWORD, name, currency });
  if (answer.status !== 201) {
    throw new Error(`registering ${email}: ${answer.status} ${answer.text}`);
  }
  return { email, password: PASSWORD, name, consumer: answer.json };
}

/// A merchant registered as the dashboard's sign-up does (POST /v1/merchants).
export async function registerMerchant({ name = 'Browser Shop', city = 'Tokyo', currency = 'JPY' } = {}) {
  const email = uniqueEmail('shop');
  const answer = await api('merchant', 'POST', '/v1/merchants', {
    name,
    city,
    country: 'JP',
    mcc: '5812',
    currency,
    email,
    password: PASSWORD,
  });
  if (answer.status !== 201) {
    throw new Error(`registering ${email}: ${answer.status} ${answer.text}`);
  }
  return { email, password: PASSWORD, name, merchant: answer.json };
}

/// An access token as the CLI gets one: the password grant of the public `paytool-cli` client,
/// at Keycloak through the gateway.
export async function accessToken(email, password) {
  const { realm } = platform();
  const form = new URLSearchParams({ grant_type: 'password', client_id: 'paytool-cli', username: email, password });
  const answer = await request(
    'sso',
    'POST',
    `/realms/${realm}/protocol/openid-connect/token`,
    Buffer.from(form.toString()),
    'application/x-www-form-urlencoded',
    {},
  );
  if (answer.status !== 200) throw new Error(`signing in ${email}: ${answer.status} ${answer.text}`);
  return answer.json.access_token;
}

/// A money-moving POST as a signed-in user: the bearer token and a fresh Idempotency-Key.
async function moneyPost(host, path, token, body, extraHeaders = {}) {
  const answer = await api(host, 'POST', path, body, {
    authorization: `Bearer ${token}`,
    'idempotency-key': randomBytes(16).toString('hex'),
    ...extraHeaders,
  });
  if (answer.status !== 201 && answer.status !== 200) {
    throw new Error(`POST ${host}.local.test${path}: ${answer.status} ${answer.text}`);
  }
  return answer.json;
}

/// QR payments as the demo makes them, through the gateway: a new merchant and consumer, a
/// top-up that covers them all, then for each amount (minor units) a dynamic QR code that
/// the consumer pays, with `payHeaders` on each payment (a `traceparent`, say). Returns the
/// payments' answers.
export async function qrPayments(amountsMinor, { currency = 'JPY', payHeaders = {} } = {}) {
  const merchant = await registerMerchant({ name: 'Counted Shop', currency });
  const consumer = await registerConsumer({ name: 'Counted Payer', currency });
  const merchantToken = await accessToken(merchant.email, merchant.password);
  const consumerToken = await accessToken(consumer.email, consumer.password);
  const total = amountsMinor.reduce((a, b) => a + b, 0);
  await moneyPost('api', '/v1/wallet/top-ups', consumerToken, { amount: { value: total, currency } });
  const payments = [];
  for (const [i, value] of amountsMinor.entries()) {
    const request = await moneyPost('merchant', '/v1/payment-requests', merchantToken, {
      amount: { value, currency },
      reference: `BROWSER-${i}`,
    });
    payments.push(await moneyPost('api', '/v1/payments', consumerToken, { qr: request.payload }, payHeaders));
  }
  return payments;
}

/// The platform's ledger checked as an operator checks it (`paytool ledger verify --json`, the
/// binary scripts/test.sh passes in PAYTOOL_BIN): every invariant, and the exit code (0 when
/// all hold, 8 when one is violated).
export function verifyLedger() {
  const bin = process.env.PAYTOOL_BIN;
  if (!bin) throw new Error('PAYTOOL_BIN is not set: run the browser tests through scripts/test.sh');
  const run = spawnSync(bin, ['--home', platform().home, 'ledger', 'verify', '--json'], {
    encoding: 'utf8',
    timeout: ACTION_TIMEOUT_MS,
  });
  if (run.error) throw run.error;
  return { exitCode: run.status, report: JSON.parse(run.stdout) };
}

/// Headless Debian Chromium with a fresh profile, the gateway's names on loopback and the
/// installation's certificate trusted. Playwright gives each launch a new empty
/// --user-data-dir of its own (it refuses one passed in `args`) and deletes it on close.
/// `trustedSpki` replaces the leaf's hash (a test that nothing else is trusted uses it).
export async function newBrowser({ trustedSpki = leafSpkiHash() } = {}) {
  if (!existsSync(CHROMIUM_PATH)) {
    throw new Error(`${CHROMIUM_PATH} is missing: run scripts/browser-setup.sh`);
  }
  return chromium.launch({
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: [
      // Root in a container has no user namespace sandbox to use.
      '--no-sandbox',
      '--disable-gpu',
      // The gateway speaks HTTP/1.1 and 2 over TCP; Chromium's own QUIC probes only fail here.
      '--disable-quic',
      '--no-first-run',
      // Without these Chromium reaches for Google's services at every start, which this
      // machine's closed network refuses many times over.
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--host-resolver-rules=MAP *.local.test 127.0.0.1',
      `--ignore-certificate-errors-spki-list=${trustedSpki}`,
    ],
  });
}

/// A page in a new context (its own cookies) with the platform's timeouts, and the console
/// errors and failed requests it sees collected for the test to check.
export async function newPage(browser) {
  const context = await browser.newContext({ ignoreHTTPSErrors: false, locale: 'en-US' });
  context.setDefaultTimeout(ACTION_TIMEOUT_MS);
  context.setDefaultNavigationTimeout(ACTION_TIMEOUT_MS);
  const page = await context.newPage();
  page.problems = [];
  page.on('console', (m) => {
    if (m.type() === 'error') page.problems.push(`console: ${m.text()}`);
  });
  page.on('pageerror', (e) => page.problems.push(`page error: ${e.message}`));
  page.on('requestfailed', (r) => page.problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));
  return page;
}

/// Signs in on Keycloak's real login page, which `page` must be showing.
export async function login(page, email, password) {
  await page.waitForSelector('#kc-form-login');
  await page.fill('#username', email);
  await page.fill('#password', password);
  await Promise.all([page.waitForNavigation(), page.click('#kc-login')]);
  const error = await page.locator('#input-error, .kc-feedback-text, #kc-error-message').first();
  if (await error.isVisible().catch(() => false)) {
    throw new Error(`Keycloak refused the login of ${email}: ${await error.innerText()}`);
  }
}

/// A full-page PNG in the artifacts directory; returns its path.
export async function screenshot(page, name) {
  mkdirSync(ARTIFACTS_DIR, { recursive: true });
  const path = join(ARTIFACTS_DIR, `${name.replace(/[^A-Za-z0-9._-]/g, '-')}.png`);
  await page.screenshot({ path, fullPage: true });
  return path;
}
