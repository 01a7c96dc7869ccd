// The consumer wallet's one script. The pure functions at the top are exported for the unit
// tests (wallet.test.mjs, `node --test`); the wiring at the bottom runs only in a browser.
// Money is integer minor units throughout, never floats: amounts typed in are parsed digit by
// digit.

/** How many transactions the history shows. */
export const HISTORY_LIMIT = 20;
/** How often a camera frame is looked at for a QR code: often enough to feel instant, rarely
 * enough to leave a phone's CPU alone. */
export const SCAN_INTERVAL_MS = 250;
/** How often the payment code's countdown is redrawn. */
export const COUNTDOWN_TICK_MS = 1000;

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

/** A problem+json answer as one sentence for the page: its title and detail. */
export function problemText(problem, status) {
  if (problem && problem.title) {
    return problem.detail ? `${problem.title}: ${problem.detail}` : problem.title;
  }
  return `The request failed (${status}).`;
}

/** The top-level data objects of an EMVCo payload (two-digit id, two-digit length, value), or
 * null when it is not one. The server checks the CRC and everything else; the page only needs
 * to know whether the code carries an amount. */
export function emvcoFields(payload) {
  const text = String(payload ?? '').trim();
  const fields = new Map();
  let at = 0;
  while (at < text.length) {
    const head = /^(\d{2})(\d{2})/.exec(text.slice(at, at + 4));
    if (!head) return null;
    const length = Number(head[2]);
    const value = text.slice(at + 4, at + 4 + length);
    if (value.length !== length) return null;
    fields.set(head[1], value);
    at += 4 + length;
  }
  return fields.has('00') ? fields : null;
}

/** The body of POST /v1/wallet/top-ups, or an error sentence for the person. */
export function topUpBody(amountText, currency, exponent) {
  const value = parseAmount(amountText, exponent);
  if (value === null) {
    return { error: `Enter a positive amount in ${currency}, with at most ${exponent} decimals.` };
  }
  return { body: { amount: { value, currency } } };
}

/** The body of POST /v1/payments: the payload, and the amount typed in when the code carries
 * none (a static code). A code with an amount is paid exactly that; an amount typed in as well
 * is sent too, so that the server refuses a mismatch rather than the page guessing. */
export function payBody(payload, amountText, currency, exponent) {
  const qr = String(payload ?? '').trim();
  if (!qr) return { error: 'Paste the QR code\'s contents, scan it, or read a photo of it.' };
  const fields = emvcoFields(qr);
  if (!fields) return { error: 'This is not a payment QR code: its contents should start with 000201.' };
  const typed = String(amountText ?? '').trim();
  if (!typed) {
    if (fields.has('54')) return { body: { qr } };
    return { error: `This QR code has no amount: enter how much to pay in ${currency}.` };
  }
  const value = parseAmount(typed, exponent);
  if (value === null) {
    return { error: `Enter a positive amount in ${currency}, with at most ${exponent} decimals.` };
  }
  return { body: { qr, amount: { value, currency } } };
}

/** The headers of every POST the page makes. */
export function postHeaders(csrf, idempotencyKey) {
  return {
    'Content-Type': 'application/json',
    Accept: 'application/json',
    'Idempotency-Key': idempotencyKey,
    'X-CSRF-Token': csrf,
  };
}

const KIND_TEXT = {
  top_up: 'Top-up',
  payment: 'Payment',
  refund: 'Refund',
  p2p: 'Transfer',
};

/** One history entry as a list row. */
export function renderRow(tx, exponent) {
  const incoming = tx.direction === 'in';
  const amount = formatMoney(tx.amount.value, tx.amount.currency, exponent);
  const kind = KIND_TEXT[tx.kind] || String(tx.kind || 'Entry');
  const counterpart = tx.merchant && tx.merchant.name
    ? ` · ${escapeHtml(tx.merchant.name)}`
    : (tx.note ? ` · ${escapeHtml(tx.note)}` : '');
  const at = String(tx.created_at || '');
  const time = at.length >= 19 ? `${at.slice(0, 10)} ${at.slice(11, 19)} UTC` : at;
  const pending = tx.state === 'pending' ? '<span class="pending">pending</span>' : '';
  return `<li class="tx tx-${incoming ? 'in' : 'out'}" data-testid="history-row" data-id="${escapeHtml(tx.id)}">`
    + `<span class="tx-what">${escapeHtml(kind)}${counterpart}</span>`
    + `<span class="tx-amount">${incoming ? '+' : '−'}${escapeHtml(amount)}</span>`
    + `<time datetime="${escapeHtml(at)}">${escapeHtml(time)}</time>`
    + pending
    + '</li>';
}

/** Whole seconds a code has left at `nowMs` (never negative). */
export function secondsLeft(expiresAt, nowMs) {
  const left = Date.parse(expiresAt) - nowMs;
  return Number.isFinite(left) && left > 0 ? Math.ceil(left / 1000) : 0;
}

/** The countdown under a payment code. */
export function countdownText(expiresAt, nowMs) {
  const left = secondsLeft(expiresAt, nowMs);
  if (left === 0) return 'Expired: show a new code.';
  return `Valid for ${left} s`;
}

// ---- The browser wiring ----

async function json(response) {
  try {
    return await response.json();
  } catch {
    return null;
  }
}

function start(doc) {
  const body = doc.body;
  if (!body.dataset.currency) return; // signed out or no wallet: links and a form, no script
  const currency = body.dataset.currency;
  const exponent = Number(body.dataset.exponent);
  const message = doc.getElementById('message');
  const balance = doc.getElementById('balance');
  const history = doc.getElementById('history');
  let csrf = null;

  const say = (text) => { message.textContent = text; };
  const signedOut = (response) => {
    if (response.status === 401) {
      window.location.assign('/');
      return true;
    }
    return false;
  };
  const showBalance = (wallet) => {
    if (!wallet || !wallet.available) return;
    balance.dataset.value = String(wallet.available.value);
    balance.textContent = formatMoney(wallet.available.value, wallet.available.currency, exponent);
  };

  const session = fetch('/session', { headers: { Accept: 'application/json' } })
    .then(async (response) => {
      if (signedOut(response)) return;
      const answer = await json(response);
      if (!response.ok) throw new Error(problemText(answer, response.status));
      csrf = answer.csrf_token;
    })
    .catch((error) => say(String(error.message || error)));

  /** A POST with the session's CSRF token and a fresh Idempotency-Key; the answer, or null
   * after the problem has been shown. */
  const post = async (path, payload) => {
    await session;
    const response = await fetch(path, {
      method: 'POST',
      headers: postHeaders(csrf, crypto.randomUUID()),
      body: JSON.stringify(payload),
    });
    if (signedOut(response)) return null;
    const answer = await json(response);
    if (!response.ok) {
      say(problemText(answer, response.status));
      return null;
    }
    return answer;
  };

  const loadBalance = async () => {
    const response = await fetch('/v1/wallet', { headers: { Accept: 'application/json' } });
    if (signedOut(response)) return;
    const answer = await json(response);
    if (!response.ok) say(problemText(answer, response.status));
    else showBalance(answer);
  };

  const loadHistory = async () => {
    const response = await fetch(`/v1/transactions?limit=${HISTORY_LIMIT}`, {
      headers: { Accept: 'application/json' },
    });
    if (signedOut(response)) return;
    const answer = await json(response);
    if (!response.ok) {
      say(problemText(answer, response.status));
      return;
    }
    history.innerHTML = answer.items.map((tx) => renderRow(tx, exponent)).join('')
      || '<li class="empty">Nothing yet.</li>';
  };

  loadBalance().catch((error) => say(String(error.message || error)));
  loadHistory().catch((error) => say(String(error.message || error)));

  // Top-up.
  const topUp = doc.getElementById('topup-form');
  topUp.addEventListener('submit', async (submitted) => {
    submitted.preventDefault();
    const made = topUpBody(topUp.elements.amount.value, currency, exponent);
    if (made.error) {
      say(made.error);
      topUp.elements.amount.focus();
      return;
    }
    say('Topping up…');
    const answer = await post('/v1/wallet/top-ups', made.body);
    if (!answer) return;
    showBalance(answer.wallet);
    topUp.reset();
    say(`Topped up ${formatMoney(made.body.amount.value, currency, exponent)}.`);
    loadHistory();
  });

  // Paying a merchant's QR code: pasted, scanned with the camera, or read from a photo.
  const pay = doc.getElementById('pay-form');
  const payResult = doc.getElementById('pay-result');
  pay.addEventListener('submit', async (submitted) => {
    submitted.preventDefault();
    const made = payBody(pay.elements.payload.value, pay.elements.amount.value, currency, exponent);
    if (made.error) {
      say(made.error);
      return;
    }
    say('Paying…');
    payResult.textContent = '';
    const answer = await post('/v1/payments', made.body);
    if (!answer) return;
    showBalance(answer.wallet);
    const paid = formatMoney(answer.amount.value, answer.amount.currency, exponent);
    const to = answer.merchant && answer.merchant.name ? ` to ${answer.merchant.name}` : '';
    payResult.textContent = `Paid ${paid}${to}.`;
    say(`Paid ${paid}${to}.`);
    pay.reset();
    loadHistory();
  });

  const scanned = (text) => {
    pay.elements.payload.value = text;
    say('QR code read: check the amount and pay.');
    pay.elements.payload.focus();
  };
  // Some browsers have BarcodeDetector but no QR support behind it (Chromium on Linux desktops).
  const detector = async () => {
    if (!('BarcodeDetector' in window)) return null;
    const formats = await window.BarcodeDetector.getSupportedFormats().catch(() => []);
    return formats.includes('qr_code') ? new window.BarcodeDetector({ formats: ['qr_code'] }) : null;
  };

  const cameraButton = doc.getElementById('scan-camera');
  const video = doc.getElementById('scan-video');
  let stopCamera = null;
  if (navigator.mediaDevices && navigator.mediaDevices.getUserMedia) {
    detector().then((reader) => { cameraButton.hidden = !reader; });
  }
  cameraButton.addEventListener('click', async () => {
    if (stopCamera) {
      stopCamera();
      return;
    }
    const reader = await detector();
    if (!reader) {
      say('This browser cannot read QR codes: paste the code\'s contents instead.');
      return;
    }
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: 'environment' } });
    } catch (error) {
      say(`The camera is not available (${error.name}): read a photo or paste the contents.`);
      return;
    }
    video.srcObject = stream;
    video.hidden = false;
    await video.play();
    cameraButton.textContent = 'Stop the camera';
    const timer = setInterval(async () => {
      const codes = await reader.detect(video).catch(() => []);
      if (codes.length > 0) {
        stopCamera();
        scanned(codes[0].rawValue);
      }
    }, SCAN_INTERVAL_MS);
    stopCamera = () => {
      clearInterval(timer);
      stream.getTracks().forEach((track) => track.stop());
      video.srcObject = null;
      video.hidden = true;
      cameraButton.textContent = 'Scan with the camera';
      stopCamera = null;
    };
  });

  doc.getElementById('scan-file').addEventListener('change', async (changed) => {
    const file = changed.target.files && changed.target.files[0];
    if (!file) return;
    const reader = await detector();
    if (!reader) {
      say('This browser cannot read QR codes from photos: paste the code\'s contents instead.');
      return;
    }
    try {
      const image = await createImageBitmap(file);
      const codes = await reader.detect(image);
      if (codes.length === 0) say('No QR code found in that photo: try another, or paste the contents.');
      else scanned(codes[0].rawValue);
    } catch (error) {
      say(`That photo could not be read (${error.name || error}).`);
    } finally {
      changed.target.value = '';
    }
  });

  // The one-time payment code: digits, QR and Code 128, and how long it is valid.
  const codeButton = doc.getElementById('code-button');
  const codeResult = doc.getElementById('code-result');
  const countdown = doc.getElementById('code-countdown');
  let ticking = null;
  let images = [];
  const svgUrl = (svg) => URL.createObjectURL(new Blob([svg], { type: 'image/svg+xml' }));
  codeButton.addEventListener('click', async () => {
    codeButton.disabled = true;
    const answer = await post('/v1/payment-codes', {});
    codeButton.disabled = false;
    if (!answer) return;
    images.forEach((url) => URL.revokeObjectURL(url));
    images = [svgUrl(answer.qr_svg), svgUrl(answer.code128_svg)];
    doc.getElementById('code-qr').src = images[0];
    doc.getElementById('code-128').src = images[1];
    doc.getElementById('code-digits').textContent = answer.code.replace(/(\d{4})(?=\d)/g, '$1 ');
    codeResult.hidden = false;
    codeResult.classList.remove('expired');
    clearInterval(ticking);
    const tick = () => {
      countdown.textContent = countdownText(answer.expires_at, Date.now());
      if (secondsLeft(answer.expires_at, Date.now()) === 0) {
        clearInterval(ticking);
        codeResult.classList.add('expired');
        loadBalance();
        loadHistory();
      }
    };
    tick();
    ticking = setInterval(tick, COUNTDOWN_TICK_MS);
    say('Show this code at the till.');
  });
}

if (typeof document !== 'undefined') {
  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', () => start(document));
  } else {
    start(document);
  }
}
