// The merchant dashboard's one script. The pure functions at the top are exported for the unit
// tests (dashboard.test.mjs, `node --test`); the wiring at the bottom runs only in a browser.
// Money is integer minor units throughout, never floats: amounts typed in are parsed digit by
// digit, and sums are of integers.

/** Minor units as the currency shows them: (1250, "USD", 2) is "12.50 USD". */
export function formatMoney(value, currency, exponent) {
  const sign = value < 0 ? '-' : '';
  const digits = String(Math.abs(value));
  if (exponent === 0) return `${sign}${digits} ${currency}`;
  const padded = digits.padStart(exponent + 1, '0');
  const major = padded.slice(0, padded.length - exponent);
  const minor = padded.slice(padded.length - exponent);
  return `${sign}${major}.${minor} ${currency}`;
}

/** An amount typed in major units ("12.5") as minor units (1250 for exponent 2); null when it is
 * not a positive amount with at most `exponent` decimals. */
export function parseAmount(text, exponent) {
  const match = /^\s*(\d+)(?:\.(\d+))?\s*$/.exec(String(text));
  if (!match) return null;
  const [, major, minor = ''] = match;
  if (minor.length > exponent) return null;
  const units = BigInt(major) * 10n ** BigInt(exponent) + BigInt(minor.padEnd(exponent, '0') || '0');
  if (units <= 0n || units > BigInt(Number.MAX_SAFE_INTEGER)) return null;
  return Number(units);
}

/** Text made safe for HTML content and quoted attributes. */
export function escapeHtml(text) {
  return String(text ?? '').replace(/[&<>"']/g, (c) => ({
    '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;',
  })[c]);
}

/** A problem+json answer as one sentence for the page. */
export function problemText(problem, status) {
  if (problem && problem.title) {
    return problem.detail ? `${problem.title}: ${problem.detail}` : problem.title;
  }
  return `The request failed (${status}).`;
}

const STATUS_TEXT = {
  completed: 'completed',
  partially_refunded: 'partly refunded',
  refunded: 'refunded',
};

/** One transaction as a list row. A payment with something left to refund gets a button. */
export function renderRow(tx, exponent) {
  const currency = tx.amount.currency;
  const money = (m) => escapeHtml(formatMoney(m.value, currency, exponent));
  const at = String(tx.completed_at || tx.created_at || '');
  const time = at.length >= 19 ? `${at.slice(0, 10)} ${at.slice(11, 19)} UTC` : at;
  const isPayment = tx.kind === 'payment';
  const left = isPayment ? tx.amount.value - (tx.refunded ? tx.refunded.value : 0) : 0;
  const what = isPayment ? `Payment${tx.channel ? ` (${tx.channel})` : ''}` : 'Refund';
  const reference = tx.reference ? ` · ${escapeHtml(tx.reference)}` : '';
  const refund = left > 0
    ? `<button type="button" class="refund" data-testid="refund-button" data-payment="${escapeHtml(tx.id)}" data-value="${left}" data-currency="${escapeHtml(currency)}" aria-label="Refund ${money({ value: left })} of this payment">Refund</button>`
    : '';
  // Every row has the same cells, so that the columns line up on wide screens.
  const net = `<span class="tx-net">${isPayment && tx.net ? `net ${money(tx.net)}` : ''}</span>`;
  return `<li class="tx tx-${escapeHtml(tx.kind)}" data-testid="tx-row" data-id="${escapeHtml(tx.id)}">`
    + `<span class="tx-what">${what}${reference}</span>`
    + `<span class="tx-amount">${isPayment ? '' : '−'}${money(tx.amount)}</span>`
    + net
    + `<span class="tx-status">${escapeHtml(STATUS_TEXT[tx.status] || tx.status)}</span>`
    + `<time datetime="${escapeHtml(at)}">${escapeHtml(time)}</time>`
    + refund
    + '</li>';
}

const newestFirst = (a, b) => {
  const at = (tx) => String(tx.completed_at || tx.created_at || '');
  if (at(a) !== at(b)) return at(a) < at(b) ? 1 : -1;
  return a.id < b.id ? 1 : a.id > b.id ? -1 : 0;
};

/** The list with `tx` in it once: a transaction seen before is replaced (a refund changes its
 * payment's status), never added twice; newest first. */
export function mergeTransaction(items, tx) {
  return [...items.filter((item) => item.id !== tx.id), tx].sort(newestFirst);
}

/** The transactions a streamed event carries. */
export function transactionsOf(event) {
  if (event.type === 'payment.completed') return [event.data];
  if (event.type === 'payment.refunded') return [event.data.payment, event.data.refund];
  return [];
}

/** The page's state after a streamed event: the list, and today's totals counting a payment
 * completed after the page's totals were taken (`since`, same UTC day) exactly once. */
export function applyEvent(view, event) {
  let { items, count, net, counted } = view;
  for (const tx of transactionsOf(event)) {
    if (!tx || !tx.id) continue;
    items = mergeTransaction(items, tx);
    const completed = String(tx.completed_at || '');
    const today = completed.slice(0, 10) === String(view.since).slice(0, 10);
    if (tx.kind === 'payment' && event.type === 'payment.completed' && today
        && Date.parse(completed) > Date.parse(view.since) && !counted.includes(tx.id)) {
      count += 1;
      net += tx.net.value;
      counted = [...counted, tx.id];
    }
  }
  return { ...view, items, count, net, counted };
}

// ---- The browser wiring ----

function start(doc) {
  const body = doc.body;
  const csrf = body.dataset.csrf;
  if (!csrf) return; // the signed-out page: a link, no script needed
  const currency = body.dataset.currency;
  const exponent = Number(body.dataset.exponent);
  const list = doc.getElementById('tx-list');
  const feedStatus = doc.getElementById('tx-status');
  let view = {
    items: [],
    count: Number(doc.getElementById('totals-count').textContent),
    net: Number(doc.getElementById('totals-sum').dataset.value),
    since: body.dataset.since,
    counted: [],
  };

  const signedOut = (response) => {
    if (response.status === 401) {
      window.location.assign('/');
      return true;
    }
    return false;
  };

  const paintRow = (tx) => {
    const html = renderRow(tx, exponent);
    const old = list.querySelector(`li[data-id="${CSS.escape(tx.id)}"]`);
    if (old) {
      old.outerHTML = html;
      return;
    }
    const index = view.items.findIndex((item) => item.id === tx.id);
    const next = view.items[index + 1];
    const before = next ? list.querySelector(`li[data-id="${CSS.escape(next.id)}"]`) : null;
    if (before) before.insertAdjacentHTML('beforebegin', html);
    else list.insertAdjacentHTML('beforeend', html);
  };

  const paintTotals = () => {
    doc.getElementById('totals-count').textContent = String(view.count);
    const sum = doc.getElementById('totals-sum');
    sum.dataset.value = String(view.net);
    sum.textContent = formatMoney(view.net, currency, exponent);
  };

  const apply = (event) => {
    view = applyEvent(view, event);
    transactionsOf(event).filter(Boolean).forEach(paintRow);
    paintTotals();
  };

  // The stream first, then the list: whatever happens in between arrives on the stream and the
  // merge keeps each transaction once.
  const source = new EventSource('/v1/transactions/stream');
  for (const type of ['payment.completed', 'payment.refunded']) {
    source.addEventListener(type, (message) => apply(JSON.parse(message.data)));
  }
  source.addEventListener('open', () => { feedStatus.textContent = 'Live: new payments appear here.'; });
  source.addEventListener('error', () => { feedStatus.textContent = 'Reconnecting to the live feed…'; });

  fetch('/v1/transactions?limit=50', { headers: { Accept: 'application/json' } })
    .then(async (response) => {
      if (signedOut(response)) return;
      const page = await response.json();
      if (!response.ok) throw new Error(problemText(page, response.status));
      for (const tx of page.items) {
        view = { ...view, items: mergeTransaction(view.items, tx) };
        paintRow(tx);
      }
    })
    .catch((error) => { feedStatus.textContent = String(error.message || error); });

  const post = (path, payload) => fetch(path, {
    method: 'POST',
    headers: {
      'Content-Type': 'application/json',
      Accept: 'application/json',
      'Idempotency-Key': crypto.randomUUID(),
      'X-CSRF-Token': csrf,
    },
    body: JSON.stringify(payload),
  });

  const form = doc.getElementById('qr-form');
  const qrStatus = doc.getElementById('qr-status');
  form.addEventListener('submit', async (submitted) => {
    submitted.preventDefault();
    const value = parseAmount(form.elements.amount.value, exponent);
    if (value === null) {
      qrStatus.textContent = `Enter a positive amount in ${currency}, with at most ${exponent} decimals.`;
      form.elements.amount.focus();
      return;
    }
    const payload = { amount: { value, currency } };
    const reference = form.elements.reference.value.trim();
    if (reference) payload.reference = reference;
    qrStatus.textContent = 'Creating…';
    const response = await post('/v1/payment-requests', payload);
    if (signedOut(response)) return;
    const answer = await response.json();
    if (!response.ok) {
      qrStatus.textContent = problemText(answer, response.status);
      return;
    }
    doc.getElementById('qr-image').src = answer.qr_svg_url;
    doc.getElementById('qr-payload').textContent = answer.payload;
    doc.getElementById('qr-result').hidden = false;
    qrStatus.textContent = `QR code for ${formatMoney(value, currency, exponent)} ready.`;
  });

  list.addEventListener('click', async (clicked) => {
    const button = clicked.target.closest('[data-testid="refund-button"]');
    if (!button) return;
    const value = Number(button.dataset.value);
    if (!window.confirm(`Refund ${formatMoney(value, currency, exponent)}?`)) return;
    button.disabled = true;
    const response = await post('/v1/refunds', {
      payment_id: button.dataset.payment,
      amount: { value, currency: button.dataset.currency },
    });
    if (signedOut(response)) return;
    const answer = await response.json();
    if (!response.ok) {
      feedStatus.textContent = problemText(answer, response.status);
      button.disabled = false;
      return;
    }
    feedStatus.textContent = `Refunded ${formatMoney(value, currency, exponent)}.`;
  });
}

if (typeof document !== 'undefined') {
  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', () => start(document));
  } else {
    start(document);
  }
}
