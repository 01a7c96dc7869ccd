// Unit tests of the dashboard's pure functions: `node --test services/merchant-api/web/`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  applyEvent, escapeHtml, formatMoney, mergeTransaction, parseAmount, problemText, renderRow,
} from './dashboard.mjs';

const payment = (id, value, completedAt, extra = {}) => ({
  id,
  kind: 'payment',
  status: 'completed',
  channel: 'qr',
  amount: { value, currency: 'JPY' },
  fee: { value: Math.round(value / 100), currency: 'JPY' },
  net: { value: value - Math.round(value / 100), currency: 'JPY' },
  refunded: { value: 0, currency: 'JPY' },
  reference: null,
  created_at: completedAt,
  completed_at: completedAt,
  ...extra,
});

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
});

test('a row carries its id and test id and escapes what the merchant typed', () => {
  const row = renderRow(payment('p1', 1200, '2026-11-25T09:00:00Z', { reference: '<b>T&7</b>' }), 0);
  assert.match(row, /^<li [^>]*data-testid="tx-row" data-id="p1">/);
  assert.ok(row.includes('&lt;b&gt;T&amp;7&lt;/b&gt;'));
  assert.ok(!row.includes('<b>'));
  assert.ok(row.includes('1200 JPY'));
  assert.ok(row.includes('net 1188 JPY'));
  assert.ok(row.includes('data-testid="refund-button" data-payment="p1" data-value="1200"'));
});

test('a fully refunded payment and a refund have no refund button', () => {
  const refunded = payment('p1', 1200, '2026-11-25T09:00:00Z', {
    status: 'refunded', refunded: { value: 1200, currency: 'JPY' },
  });
  assert.ok(!renderRow(refunded, 0).includes('refund-button'));
  const refund = { ...payment('r1', 300, '2026-11-25T09:05:00Z'), kind: 'refund', payment_id: 'p1' };
  const row = renderRow(refund, 0);
  assert.ok(!row.includes('refund-button'));
  assert.ok(row.includes('Refund'));
});

test('a partly refunded payment offers to refund what is left', () => {
  const partly = payment('p1', 1200, '2026-11-25T09:00:00Z', {
    status: 'partially_refunded', refunded: { value: 200, currency: 'JPY' },
  });
  assert.ok(renderRow(partly, 0).includes('data-value="1000"'));
});

test('merging keeps each transaction once, replaces a changed one and sorts newest first', () => {
  let items = [];
  items = mergeTransaction(items, payment('a', 100, '2026-11-25T09:00:00Z'));
  items = mergeTransaction(items, payment('b', 200, '2026-11-25T10:00:00Z'));
  items = mergeTransaction(items, payment('a', 100, '2026-11-25T09:00:00Z', { status: 'refunded' }));
  assert.deepEqual(items.map((t) => t.id), ['b', 'a']);
  assert.equal(items[1].status, 'refunded');
});

test('a streamed payment is added and counted in the totals once, however often it arrives', () => {
  const since = '2026-11-25T08:00:00.000000Z';
  let view = { items: [], count: 3, net: 3000, since, counted: [] };
  const event = { id: 7, type: 'payment.completed', data: payment('p9', 1000, '2026-11-25T09:00:00Z') };
  view = applyEvent(view, event);
  view = applyEvent(view, event);
  assert.equal(view.items.length, 1);
  assert.equal(view.count, 4);
  assert.equal(view.net, 3990);
});

test('a payment the page totals already held, or from another day, does not change them', () => {
  const since = '2026-11-25T08:00:00.000000Z';
  const view = { items: [], count: 1, net: 990, since, counted: [] };
  const before = applyEvent(view, { type: 'payment.completed', data: payment('old', 1000, '2026-11-25T07:59:00Z') });
  assert.equal(before.count, 1);
  assert.equal(before.items.length, 1);
  const tomorrow = applyEvent(view, { type: 'payment.completed', data: payment('t', 1000, '2026-11-26T00:01:00Z') });
  assert.equal(tomorrow.count, 1);
});

test('a refund event updates its payment and adds the refund without touching the totals', () => {
  const since = '2026-11-25T08:00:00Z';
  let view = { items: [], count: 0, net: 0, since, counted: [] };
  view = applyEvent(view, { type: 'payment.completed', data: payment('p', 1000, '2026-11-25T09:00:00Z') });
  view = applyEvent(view, {
    type: 'payment.refunded',
    data: {
      payment: payment('p', 1000, '2026-11-25T09:00:00Z', { status: 'partially_refunded', refunded: { value: 400, currency: 'JPY' } }),
      refund: { ...payment('r', 400, '2026-11-25T09:10:00Z'), kind: 'refund', payment_id: 'p' },
    },
  });
  assert.deepEqual(view.items.map((t) => t.id), ['r', 'p']);
  assert.equal(view.items[1].status, 'partially_refunded');
  assert.equal(view.count, 1);
  assert.equal(view.net, 990);
});

test('escaping and problems are safe and readable', () => {
  assert.equal(escapeHtml(`<a href="x">'&'</a>`), '&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;');
  assert.equal(escapeHtml(null), '');
  assert.equal(problemText({ title: 'Invalid request', detail: 'amount: too big' }, 422), 'Invalid request: amount: too big');
  assert.equal(problemText(null, 502), 'The request failed (502).');
});
