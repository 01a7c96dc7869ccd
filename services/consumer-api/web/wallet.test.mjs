// Unit tests of the wallet's pure functions: `node --test services/consumer-api/web/`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  countdownText, emvcoFields, escapeHtml, formatMoney, parseAmount, payBody, postHeaders,
  problemText, renderRow, secondsLeft, topUpBody,
} from './wallet.mjs';

// A static and a dynamic paytool code: id 00, method 01 (11 static, 12 dynamic), 54 amount.
const STATIC_QR = '000201010211' + '5303392' + '5802JP' + '6304ABCD';
const DYNAMIC_QR = '000201010212' + '5303392' + '5403880' + '5802JP' + '6304ABCD';

test('money is formatted from minor units with the currency exponent', () => {
  assert.equal(formatMoney(1200, 'JPY', 0), '1200 JPY');
  assert.equal(formatMoney(1250, 'USD', 2), '12.50 USD');
  assert.equal(formatMoney(5, 'USD', 2), '0.05 USD');
  assert.equal(formatMoney(-1005, 'BHD', 3), '-1.005 BHD');
  assert.equal(formatMoney(0, 'EUR', 2), '0.00 EUR');
});

test('amounts typed in major units become exact minor units or are refused', () => {
  assert.equal(parseAmount('12.5', 2), 1250);
  assert.equal(parseAmount(' 1200 ', 0), 1200);
  assert.equal(parseAmount('0.29', 2), 29); // 0.29 * 100 is 28.999… in floats
  assert.equal(parseAmount('1.234', 2), null);
  assert.equal(parseAmount('12.5', 0), null);
  assert.equal(parseAmount('0', 0), null);
  assert.equal(parseAmount('-5', 0), null);
  assert.equal(parseAmount('1e3', 0), null);
  assert.equal(parseAmount('', 0), null);
  assert.equal(parseAmount('99999999999999999999', 0), null);
});

test('html is escaped and problems read as title and detail', () => {
  assert.equal(escapeHtml(`<a href="x">'&'</a>`), '&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;');
  assert.equal(escapeHtml(null), '');
  assert.equal(problemText({ title: 'Insufficient funds', detail: 'Top up first.' }, 422),
    'Insufficient funds: Top up first.');
  assert.equal(problemText({ title: 'Forbidden' }, 403), 'Forbidden');
  assert.equal(problemText(null, 502), 'The request failed (502).');
});

test('an EMVCo payload is split into its top-level fields', () => {
  const fields = emvcoFields(` ${DYNAMIC_QR}\n`);
  assert.equal(fields.get('00'), '01');
  assert.equal(fields.get('01'), '12');
  assert.equal(fields.get('54'), '880');
  assert.equal(emvcoFields(STATIC_QR).has('54'), false);
  assert.equal(emvcoFields('hello'), null);
  assert.equal(emvcoFields('00020101'), null, 'a length past the end');
  assert.equal(emvcoFields(''), null);
  assert.equal(emvcoFields('0102ab'), null, 'no payload format indicator');
});

test('a top-up body carries exact minor units in the wallet currency', () => {
  assert.deepEqual(topUpBody('1000', 'JPY', 0), { body: { amount: { value: 1000, currency: 'JPY' } } });
  assert.deepEqual(topUpBody('10.05', 'USD', 2), { body: { amount: { value: 1005, currency: 'USD' } } });
  assert.match(topUpBody('ten', 'JPY', 0).error, /positive amount in JPY/);
  assert.match(topUpBody('1.5', 'JPY', 0).error, /at most 0 decimals/);
});

test('a pay body sends the amount only for a code without one, or as typed to be checked', () => {
  assert.deepEqual(payBody(DYNAMIC_QR, '', 'JPY', 0), { body: { qr: DYNAMIC_QR } });
  assert.deepEqual(payBody(`  ${STATIC_QR} `, '500', 'JPY', 0),
    { body: { qr: STATIC_QR, amount: { value: 500, currency: 'JPY' } } });
  assert.deepEqual(payBody(DYNAMIC_QR, '880', 'JPY', 0),
    { body: { qr: DYNAMIC_QR, amount: { value: 880, currency: 'JPY' } } });
  assert.match(payBody(STATIC_QR, '', 'JPY', 0).error, /no amount/);
  assert.match(payBody('', '', 'JPY', 0).error, /Paste/);
  assert.match(payBody('https://example.test/', '', 'JPY', 0).error, /not a payment QR code/);
  assert.match(payBody(STATIC_QR, '-3', 'JPY', 0).error, /positive amount/);
});

test('every POST carries the CSRF token and an idempotency key', () => {
  const headers = postHeaders('csrf-1', 'key-1');
  assert.equal(headers['X-CSRF-Token'], 'csrf-1');
  assert.equal(headers['Idempotency-Key'], 'key-1');
  assert.equal(headers['Content-Type'], 'application/json');
});

test('history rows show direction, merchant or note, and escape what others chose', () => {
  const payment = renderRow({
    id: 't1', kind: 'payment', direction: 'out', state: 'posted',
    amount: { value: 880, currency: 'JPY' }, merchant: { id: 'm', name: '<b>Ramen</b>' },
    note: null, created_at: '2026-11-25T08:00:01.123Z',
  }, 0);
  assert.match(payment, /data-testid="history-row"/);
  assert.match(payment, /Payment · &lt;b&gt;Ramen&lt;\/b&gt;/);
  assert.match(payment, /−880 JPY/);
  assert.match(payment, /2026-11-25 08:00:01 UTC/);
  assert.doesNotMatch(payment, /<b>/);
  const topUp = renderRow({
    id: 't2', kind: 'top_up', direction: 'in', state: 'pending',
    amount: { value: 1050, currency: 'USD' }, merchant: null, note: null, created_at: '',
  }, 2);
  assert.match(topUp, /Top-up/);
  assert.match(topUp, /\+10\.50 USD/);
  assert.match(topUp, /pending/);
  const transfer = renderRow({
    id: 't3', kind: 'p2p', direction: 'in', state: 'posted',
    amount: { value: 1, currency: 'JPY' }, merchant: null, note: 'lunch "split"', created_at: '',
  }, 0);
  assert.match(transfer, /Transfer · lunch &quot;split&quot;/);
});

test('the countdown counts whole seconds down to expiry', () => {
  const expires = '2026-11-25T09:00:00.000Z';
  const at = Date.parse(expires);
  assert.equal(secondsLeft(expires, at - 60_000), 60);
  assert.equal(secondsLeft(expires, at - 59_001), 60, 'a part of a second still counts');
  assert.equal(countdownText(expires, at - 42_000), 'Valid for 42 s');
  assert.equal(countdownText(expires, at), 'Expired: show a new code.');
  assert.equal(countdownText(expires, at + 5_000), 'Expired: show a new code.');
  assert.equal(secondsLeft('not a date', at), 0);
});
