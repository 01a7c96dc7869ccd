// Proves the browser harness end to end on a page that exists today: Keycloak's account
// console for the realm, reached through the gateway in Debian's Chromium, signed in on
// Keycloak's real login page as a consumer registered through consumer-api.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { login, newBrowser, newPage, platform, registerConsumer, screenshot } from './platform.mjs';

let browser;

before(async () => {
  browser = await newBrowser();
});

after(async () => {
  await browser?.close();
});

test('a consumer registered through the API signs in to the account console and sees their name', async () => {
  const person = await registerConsumer({ name: 'Aiko Browser' });
  const page = await newPage(browser);
  const { realm, url } = platform();
  const account = url('sso', `/realms/${realm}/account/`);

  await page.goto(account);
  // The console is a single-page app that sends an unknown visitor to the login page.
  await page.waitForURL(/\/protocol\/openid-connect\/auth|\/login-actions\//);
  assert.match(new URL(page.url()).hostname, /^sso\.local\.test$/);
  await screenshot(page, 'keycloak-account-1-login-page');

  await login(page, person.email, person.password);
  await page.waitForURL((u) => u.href.startsWith(account));
  // The header's user menu shows the signed-in person's full name once the app has loaded,
  // and the personal info form is filled from their account.
  await page.getByText('Aiko Browser').first().waitFor();
  await page.waitForFunction((email) => document.querySelector('#email')?.value === email, person.email);
  await screenshot(page, 'keycloak-account-2-signed-in');

  const body = await page.locator('body').innerText();
  assert.ok(body.includes('Aiko Browser'), `the account console names the user: ${body.slice(0, 500)}`);
  assert.equal(await page.inputValue('#firstName'), 'Aiko');
  // Everything the page loaded came through the gateway with the installation's certificate.
  const broken = page.problems.filter((p) => /ERR_CERT|ERR_NAME_NOT_RESOLVED|ERR_CONNECTION/.test(p));
  assert.deepEqual(broken, []);
  await page.context().close();
});

test('a browser pinned to another key refuses the gateway', async () => {
  // The harness trusts the installation's key, not every certificate: pinned to some other
  // key, the same page fails on its certificate.
  const { randomBytes } = await import('node:crypto');
  const other = await newBrowser({ trustedSpki: randomBytes(32).toString('base64') });
  try {
    const page = await newPage(other);
    await assert.rejects(page.goto(platform().url('sso', '/realms/master/')), /ERR_CERT_AUTHORITY_INVALID/);
  } finally {
    await other.close();
  }
});
