// The whole story in a real browser: a merchant signs in to the dashboard through
// Keycloak's real login page and shows a QR code; a consumer, in a second browser context,
// signs in to the wallet and pays it by pasting the payload; the payment appears on the
// merchant's dashboard without a reload, within 2 s of the wallet's answer.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  login, newBrowser, newPage, platform, registerConsumer, registerMerchant, screenshot,
} from './platform.mjs';

/// The bound: the dashboard shows the payment this soon after the wallet's answer.
const LIVE_WITHIN_MS = 2_000;

let browser;

before(async () => {
  browser = await newBrowser();
});

after(async () => {
  await browser?.close();
});

test('a payment made in the wallet appears on the merchant dashboard live, without a reload', async () => {
  const { url } = platform();
  const merchant = await registerMerchant({ name: 'Live Ramen' });
  const consumer = await registerConsumer({ name: 'Wallet Walker' });

  // The merchant: dashboard → Keycloak's login page → back, signed in.
  const dashboard = await newPage(browser);
  await dashboard.goto(url('merchant', '/'));
  await dashboard.getByTestId('login-link').click();
  await login(dashboard, merchant.email, merchant.password);
  await dashboard.waitForURL((u) => u.hostname === 'merchant.local.test');
  await dashboard.getByTestId('qr-form').waitFor();
  await screenshot(dashboard, 'live-1-dashboard-signed-in');
  let reloads = 0;
  dashboard.on('framenavigated', (frame) => {
    if (frame === dashboard.mainFrame()) reloads += 1;
  });

  await dashboard.getByTestId('qr-amount').fill('1200');
  await dashboard.getByTestId('qr-reference').fill('TABLE-4');
  await dashboard.getByTestId('qr-submit').click();
  const payloadCell = dashboard.getByTestId('qr-payload');
  await dashboard.waitForFunction(
    () => (document.querySelector('[data-testid="qr-payload"]')?.textContent ?? '').startsWith('000201'),
  );
  const payload = (await payloadCell.textContent()).trim();
  await dashboard.waitForFunction(() => {
    const img = document.querySelector('[data-testid="qr-image"]');
    return img && img.complete && img.naturalWidth > 0;
  });
  await screenshot(dashboard, 'live-2-dashboard-qr');
  const rowsBefore = await dashboard.getByTestId('tx-row').count();

  // The consumer, in a context of its own (no shared cookies): wallet → Keycloak → back.
  const wallet = await newPage(browser);
  await wallet.goto(url('wallet', '/'));
  await wallet.getByTestId('login-link').click();
  await login(wallet, consumer.email, consumer.password);
  await wallet.waitForURL((u) => u.hostname === 'wallet.local.test');
  await wallet.getByTestId('topup-form').waitFor();
  await wallet.getByTestId('topup-amount').fill('5000');
  await wallet.getByTestId('topup-submit').click();
  await wallet.waitForFunction(() => /5[,.]?000/.test(document.querySelector('[data-testid="balance"]')?.textContent ?? ''));
  await wallet.getByTestId('pay-payload').fill(payload);
  await wallet.getByTestId('pay-submit').click();
  await wallet.waitForFunction(() => (document.querySelector('[data-testid="pay-result"]')?.textContent ?? '').length > 0);
  const answered = Date.now();
  await screenshot(wallet, 'live-3-wallet-paid');
  const result = await wallet.getByTestId('pay-result').innerText();
  assert.match(result, /1[,.]?200/, `the wallet shows the payment: ${result}`);

  // The dashboard, untouched since: the new row arrives over the live stream.
  await dashboard.waitForFunction(
    (before) => document.querySelectorAll('[data-testid="tx-row"]').length > before,
    rowsBefore,
    { timeout: LIVE_WITHIN_MS },
  );
  const seenAfterMs = Date.now() - answered;
  await screenshot(dashboard, 'live-4-dashboard-live-row');
  assert.equal(reloads, 0, 'the dashboard did not reload');
  const row = await dashboard.getByTestId('tx-row').first().innerText();
  assert.match(row, /1[,.]?200/, `the new row shows the amount: ${row}`);
  assert.ok(seenAfterMs <= LIVE_WITHIN_MS, `seen ${seenAfterMs} ms after the wallet's answer`);

  // The wallet's balance is the top-up less the payment, to the yen.
  await wallet.waitForFunction(() => /3[,.]?800/.test(document.querySelector('[data-testid="balance"]')?.textContent ?? ''));
  await dashboard.context().close();
  await wallet.context().close();
});
