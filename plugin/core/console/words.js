// Plain words for what the connector reports: states, times, money, history steps, failures.
// Bookkeepers and store operators read these, not engineers.

import { h } from './dom.js';

// ---- time ---------------------------------------------------------------------------------

const dateTime = new Intl.DateTimeFormat(undefined, {
  dateStyle: 'medium', timeStyle: 'short',
});
// (`dateStyle` cannot be combined with `timeZoneName`: the parts are spelled out.)
const dateTimeZone = new Intl.DateTimeFormat(undefined, {
  year: 'numeric', month: 'short', day: 'numeric', hour: 'numeric', minute: '2-digit', timeZoneName: 'short',
});

/** The browser's time zone name (e.g. "Europe/Paris"). */
export const timeZone = Intl.DateTimeFormat().resolvedOptions().timeZone || 'your time zone';

function parseTime(value) {
  if (value === null || value === undefined || value === '') return null;
  const d = typeof value === 'number' ? new Date(value * 1000) : new Date(value);
  return Number.isNaN(d.getTime()) ? null : d;
}

/** A `<time>` element in the browser's time zone, or null when there is no time. */
export function when(value, { zone = false } = {}) {
  const d = parseTime(value);
  if (!d) return null;
  const text = (zone ? dateTimeZone : dateTime).format(d);
  return h('time', { datetime: d.toISOString(), title: d.toISOString(), text });
}

const dateOnly = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium' });

/** A calendar date (`2026-01-08`) as the person writes dates; no time zone shift. */
export function day(value) {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(String(value || ''));
  if (!m) return value || '';
  return dateOnly.format(new Date(Number(m[1]), Number(m[2]) - 1, Number(m[3])));
}

const relative = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });

/** "in 5 minutes", "3 hours ago" (relative to `now`, a Date). */
export function fromNow(value, now = new Date()) {
  const d = parseTime(value);
  if (!d) return '';
  const seconds = Math.round((d.getTime() - now.getTime()) / 1000);
  const abs = Math.abs(seconds);
  if (abs < 60) return relative.format(seconds, 'second');
  if (abs < 3600) return relative.format(Math.round(seconds / 60), 'minute');
  if (abs < 86400) return relative.format(Math.round(seconds / 3600), 'hour');
  return relative.format(Math.round(seconds / 86400), 'day');
}

// ---- money --------------------------------------------------------------------------------

/**
 * Money as text. Amounts arrive as decimal strings and are formatted as they are (the string
 * form of Intl keeps every digit; nothing is turned into a binary fraction first). With a
 * currency code the amount carries its symbol and code; without one, the amount alone.
 */
export function money(amount, currency) {
  if (amount === null || amount === undefined || amount === '') return '';
  const text = String(amount);
  if (!/^-?\d+(\.\d+)?$/.test(text)) return text;
  const code = typeof currency === 'string' && /^[A-Za-z]{3}$/.test(currency) ? currency.toUpperCase() : null;
  try {
    if (code) {
      return new Intl.NumberFormat(undefined, {
        style: 'currency', currency: code, currencyDisplay: 'symbol',
        minimumFractionDigits: 2, maximumFractionDigits: 20,
      }).format(text) + (symbolIsCode(code) ? '' : ` ${code}`);
    }
    return new Intl.NumberFormat(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 20 }).format(text);
  } catch {
    return code ? `${text} ${code}` : text;
  }
}

function symbolIsCode(code) {
  const parts = new Intl.NumberFormat(undefined, { style: 'currency', currency: code }).formatToParts(0);
  return parts.some((p) => p.type === 'currency' && p.value === code);
}

/** A quantity, without trailing zeros. */
export function quantity(value) {
  if (value === null || value === undefined || value === '') return '';
  const text = String(value);
  if (!/^-?\d+(\.\d+)?$/.test(text)) return text;
  return new Intl.NumberFormat(undefined, { maximumFractionDigits: 20 }).format(text);
}

// ---- states -------------------------------------------------------------------------------

/** Each sync state: a word, a symbol (so colour is never the only sign) and its meaning. */
export const STATES = {
  posted: { word: 'Posted', icon: '✓', tone: 'good', meaning: 'In QuickBooks.' },
  pending: { word: 'Pending', icon: '…', tone: 'info', meaning: 'Received; being sent to QuickBooks.' },
  retrying: { word: 'Retrying', icon: '↻', tone: 'warn', meaning: 'A temporary problem; the connector tries again by itself.' },
  failed: { word: 'Failed', icon: '✕', tone: 'bad', meaning: 'Needs you: read what went wrong, fix it, then press Replay.' },
  needs_reauth: { word: 'Waiting for QuickBooks sign-in', icon: '⚠', tone: 'bad', meaning: 'QuickBooks access was lost. It resumes by itself once QuickBooks is connected again.' },
  skipped: { word: 'Skipped', icon: '–', tone: 'muted', meaning: 'Nothing to post (for example an incomplete order).' },
};

export const STATE_ORDER = ['failed', 'needs_reauth', 'retrying', 'pending', 'posted', 'skipped'];

/** A state badge: symbol and word, coloured. */
export function stateBadge(state) {
  const s = STATES[state] || { word: String(state), icon: '?', tone: 'muted' };
  return h('span', { class: `badge ${s.tone}`, 'data-state': state },
    h('span', { 'aria-hidden': 'true', text: s.icon }), ` ${s.word}`);
}

export const ENTITIES = { order: 'Order', customer: 'Customer' };

export function entityWord(entity) {
  return ENTITIES[entity] || String(entity);
}

// ---- QuickBooks links -----------------------------------------------------------------------

// Links open the document in QuickBooks Online. Sandbox companies live on
// app.sandbox.qbo.intuit.com instead, but nothing the connector reports tells a sandbox company
// from a production one, so the production address is used; on a sandbox the link lands on
// the sign-in of the wrong environment.
const QBO_APP = 'https://app.qbo.intuit.com/app';

const QBO_PAGES = {
  Invoice: (id) => `${QBO_APP}/invoice?txnId=${encodeURIComponent(id)}`,
  Payment: (id) => `${QBO_APP}/recvpayment?txnId=${encodeURIComponent(id)}`,
  RefundReceipt: (id) => `${QBO_APP}/refundreceipt?txnId=${encodeURIComponent(id)}`,
  CreditMemo: (id) => `${QBO_APP}/creditmemo?txnId=${encodeURIComponent(id)}`,
  SalesReceipt: (id) => `${QBO_APP}/salesreceipt?txnId=${encodeURIComponent(id)}`,
  Customer: (id) => `${QBO_APP}/customerdetail?nameId=${encodeURIComponent(id)}`,
};

const DOC_WORDS = {
  Invoice: 'Invoice',
  Payment: 'Payment received',
  RefundReceipt: 'Refund receipt',
  CreditMemo: 'Credit memo',
  SalesReceipt: 'Sales receipt',
  Customer: 'Customer',
};

export function docWord(type) {
  return DOC_WORDS[type] || String(type);
}

/** The QuickBooks page of a document, or null for a type without a known page. */
export function qboLink(type, id) {
  const page = QBO_PAGES[type];
  return page && id ? page(id) : null;
}

/**
 * The documents a record lists: its `documents` array when it has one, else the single
 * document behind `qbo_id` (an invoice for an order, the customer for a customer).
 */
export function documentsOf(record) {
  if (Array.isArray(record.documents) && record.documents.length) return record.documents;
  if (!record.qbo_id) return [];
  const type = record.entity === 'customer' ? 'Customer' : 'Invoice';
  const doc = { type, qbo_id: record.qbo_id, sync_token: record.qbo_sync_token };
  // A record read one by one has its history: the last invoice prepared gives number and total.
  const mapped = Array.isArray(record.audit)
    ? [...record.audit].reverse().find((e) => e.step === 'mapped' && e.detail) : null;
  if (mapped && type === 'Invoice') {
    doc.doc_number = mapped.detail.doc_number || undefined;
    doc.total = mapped.detail.total || undefined;
  }
  return [doc];
}

// ---- history ------------------------------------------------------------------------------

const SOURCE_WORDS = {
  'store/order/created': 'The order was placed in BigCommerce',
  'store/order/updated': 'The order was changed in BigCommerce',
  'store/order/statusUpdated': 'The order status changed in BigCommerce',
  'store/order/archived': 'The order was archived in BigCommerce',
  'store/order/refund/created': 'A refund was issued in BigCommerce',
  'store/customer/created': 'The customer signed up in BigCommerce',
  'store/customer/updated': 'The customer was changed in BigCommerce',
  'store/customer/deleted': 'The customer was deleted in BigCommerce',
  'store/customer/address/updated': 'The customer changed an address in BigCommerce',
};

const MATCHED = {
  link: 'the customer it was linked to before',
  email: 'email address',
  name: 'name',
  created: 'a new QuickBooks customer',
  guest: 'the guest customer',
};

function matchedWords(m) {
  return MATCHED[m] || (m ? String(m).replaceAll('_', ' ') : '');
}

const ORDER_STATUS = {
  0: 'Incomplete', 1: 'Pending', 2: 'Shipped', 3: 'Partially Shipped', 4: 'Refunded', 5: 'Cancelled',
  6: 'Declined', 7: 'Awaiting Payment', 8: 'Awaiting Pickup', 9: 'Awaiting Shipment', 10: 'Completed',
  11: 'Awaiting Fulfillment', 12: 'Manual Verification Required', 13: 'Disputed', 14: 'Partially Refunded',
};

/** One history entry in a sentence. */
export function stepWords(entry, record) {
  const d = entry.detail && typeof entry.detail === 'object' ? entry.detail : {};
  const what = entityWord(record.entity).toLowerCase();
  switch (entry.step) {
    case 'received':
      return `${SOURCE_WORDS[d.scope] || `BigCommerce sent an update (${d.scope || 'unknown'})`}.`;
    case 'fetched':
      if (record.entity === 'customer') {
        return d.found === false ? 'Looked the customer up in BigCommerce: it was deleted there.'
          : 'Read the customer from BigCommerce.';
      }
      return `Read the order from BigCommerce: ${ORDER_STATUS[d.status_id] ?? `status ${d.status_id}`}, total ${money(d.total_inc_tax)}, ${d.lines ?? '?'} line${d.lines === 1 ? '' : 's'}.`;
    case 'mapped': {
      const by = d.customer?.matched_by;
      const who = !by ? '' : by === 'created' ? ' A new QuickBooks customer was made for it.'
        : ` Customer found by ${matchedWords(by)}.`;
      return `Prepared the invoice${d.doc_number ? ` number ${d.doc_number}` : ''} for ${money(d.total)}.${who}`;
    }
    case 'matched':
      if (d.matched_by === 'created') {
        return `Made a new QuickBooks customer${d.display_name ? ` “${d.display_name}”` : ''}.`;
      }
      return `Matched the QuickBooks customer${d.display_name ? ` “${d.display_name}”` : ''} by ${matchedWords(d.matched_by)}.`;
    case 'write_planned':
      return 'Sending it to QuickBooks.';
    case 'posted':
      return `Saved in QuickBooks${d.qbo_id ? ` (QuickBooks id ${d.qbo_id})` : ''}.`;
    case 'updated':
      return `Updated the QuickBooks ${what}${d.renamed ? ' (renamed)' : ''}${d.reactivated ? ' (made active again)' : ''}.`;
    case 'unchanged':
      return 'Nothing that QuickBooks shows had changed, so nothing was sent.';
    case 'found_existing':
      return `Found it already in QuickBooks (id ${d.qbo_id}) and linked it instead of creating a second copy.`;
    case 'recreating':
      return 'The QuickBooks invoice had been deleted there; creating it once more.';
    case 'stale_sync_token':
      return 'QuickBooks had a newer version of the invoice; tried again with it.';
    case 'archived':
      return 'The order was archived in BigCommerce; the invoice was left as it is.';
    case 'deactivated':
      return 'The customer was deleted in BigCommerce, so the QuickBooks customer was made inactive (it is kept).';
    case 'skipped':
      return `Skipped: ${d.reason || 'nothing to post'}.`;
    case 'attempt_failed': {
      const explanation = d.explanation || `${d.service || 'it'} did not answer as expected`;
      let next = '';
      if (d.gave_up) next = ' The connector gave up retrying.';
      else if (d.next_attempt_at) next = ` Will try again ${fromNow(d.next_attempt_at, new Date(entry.at))}.`;
      else if (d.reason === 'needs_reauth') next = ' Waiting for QuickBooks to be connected again.';
      else if (d.retryable === false) next = ' This needs a person to fix.';
      return `Attempt ${d.attempt ?? ''} failed: ${connectWords(explanation, 'on the Status page')}.${next}`.replace('..', '.');
    }
    case 'replay_requested':
      return `Someone pressed Replay (it was ${STATES[d.from]?.word.toLowerCase() || d.from}).`;
    case 'reauthorized':
      return 'QuickBooks was connected again; resuming.';
    default:
      return `${sentence(String(entry.step).replaceAll('_', ' '))}.`;
  }
}

// ---- failures -----------------------------------------------------------------------------

/**
 * Splits the connector's `last_error` ("… What to do: …") into what went wrong and what to
 * do, and adds what the console lets the person do about it.
 */
export function explainFailure(record) {
  const text = record.last_error || '';
  const at = text.indexOf('What to do:');
  let what = at >= 0 ? text.slice(0, at).trim() : text.trim();
  let todo = at >= 0 ? text.slice(at + 'What to do:'.length).trim() : '';
  // The connector's advice names the HTTP routes; in the console those are buttons.
  const replayRoute = /(POST )?\/admin\/replay\/\{?[a-z]+\}?\/\{?[a-z0-9]+\}?/gi;
  todo = todo.replace(replayRoute, 'press Replay below');
  todo = todo.replace(/\(GET\/PUT \/admin\/mapping\)/g, 'on the Mapping page');
  todo = connectWords(todo, 'with the button on the Status page');
  what = connectWords(what, 'with the button on the Status page');
  what = what.replace(/^gave up after (\d+) attempts \(max_attempts\):/, 'Gave up after $1 tries:');
  const action = ACTIONS[record.reason] || null;
  return { what: sentence(what), todo: sentence(todo), action };
}

/** The connector's advice names its OAuth route; in the console that is a button. */
export function connectWords(text, where) {
  return String(text || '').replace(/re-authorize at \/oauth\/quickbooks\/connect/g, `connect QuickBooks again ${where}`);
}

/** Starts a sentence with a capital letter. */
export function sentence(text) {
  const t = String(text || '').trim();
  return t ? t[0].toUpperCase() + t.slice(1) : t;
}

/** What the console itself can take the person to, per failure reason. */
const ACTIONS = {
  mapping: { text: 'Open the mapping', href: '#/mapping' },
  invalid_reference: { text: 'Open the mapping', href: '#/mapping' },
  needs_reauth: { text: 'Go to the status page to connect QuickBooks', href: '#/status' },
  bigcommerce_auth: { text: 'Check the connections on the status page', href: '#/status' },
  configuration: { text: 'Check the connections on the status page', href: '#/status' },
};

// ---- backfill -----------------------------------------------------------------------------

export const BACKFILL_STATES = {
  idle: 'Not started',
  running: 'Running',
  done: 'Finished',
  cancelled: 'Cancelled',
  failed: 'Stopped with a problem',
};
