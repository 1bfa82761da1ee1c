// The console's views. Each takes a context `{ signal, params, go }` and returns the nodes to
// show; it calls only the JSON routes of CONTRACT §3.

import * as api from './api.js';
import { h, replace, banner, rawJson, facts, field } from './dom.js';
import {
  when, fromNow, money, quantity, STATES, STATE_ORDER, stateBadge, entityWord, docWord, qboLink,
  documentsOf, stepWords, explainFailure, BACKFILL_STATES, ENTITIES, connectWords, sentence, day,
} from './words.js';

const heading = (text) => h('h1', { tabindex: '-1', text });

function problem(resp, what) {
  return banner('bad', h('strong', { text: `${what}: ` }), api.errorText(resp));
}

/** A button that runs `action` once at a time, showing `busyText` meanwhile. */
function actionButton(text, busyText, action, props = {}) {
  const button = h('button', { type: 'button', ...props, text });
  button.addEventListener('click', async () => {
    if (button.disabled) return;
    button.disabled = true;
    button.setAttribute('aria-busy', 'true');
    button.textContent = busyText;
    try {
      await action();
    } catch (err) {
      if (!(err instanceof api.Unauthorized) && !(err instanceof api.Unreachable)) throw err;
    } finally {
      if (button.isConnected) {
        button.disabled = false;
        button.removeAttribute('aria-busy');
        button.textContent = text;
      }
    }
  });
  return button;
}

function externalLink(href, text, label) {
  return h('a', { href, target: '_blank', rel: 'noopener noreferrer', 'aria-label': label, text: `${text} ↗` });
}

// ---- sign-in ------------------------------------------------------------------------------

export function signInView({ message, onToken }) {
  const input = h('input', {
    type: 'password', name: 'token', autocomplete: 'off', spellcheck: 'false', required: true,
  });
  const out = h('div', { class: 'out', 'aria-live': 'polite' });
  if (message) out.append(banner('bad', message));
  const submit = h('button', { type: 'submit', class: 'primary', text: 'Sign in' });
  const form = h('form', { class: 'card narrow', 'aria-labelledby': 'signin-title' },
    h('p', { text: 'This console shows what the connector has sent from BigCommerce to QuickBooks, what failed and why, and lets you replay it.' }),
    field('Admin token', input, 'The admin_token of this connector. It is kept only in this browser tab until you close it or sign out.'),
    out,
    h('div', { class: 'actions' }, submit));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const value = input.value.trim();
    if (!value) return;
    submit.disabled = true;
    submit.textContent = 'Checking…';
    replace(out);
    try {
      const resp = await api.get('/admin/status', { tokenOverride: value });
      if (resp.ok) {
        api.setToken(value);
        onToken();
        return;
      }
      out.append(problem(resp, 'The connector could not check the token'));
    } catch (err) {
      if (!(err instanceof api.Unauthorized)) throw err;
    } finally {
      if (submit.isConnected) {
        submit.disabled = false;
        submit.textContent = 'Sign in';
      }
    }
  });
  queueMicrotask(() => input.focus());
  return [h('h1', { id: 'signin-title', tabindex: '-1', text: 'Sign in to the connector console' }), form];
}

// ---- status -------------------------------------------------------------------------------

export async function statusView({ signal }) {
  const resp = await api.get('/admin/status', { signal });
  if (!resp.ok) return [heading('Status'), problem(resp, 'The status could not be read')];
  const s = resp.data;
  const bc = s.bigcommerce || {};
  const qbo = s.quickbooks || {};
  const both = bc.ok === true && qbo.ok === true;
  const summary = both
    ? banner('good', h('strong', { text: 'Both sides are connected. ' }), countsSentence(s.records))
    : banner('bad', h('strong', { text: 'Something needs attention. ' }), 'See the connection marked “Not connected” below.');
  return [
    heading('Status'),
    summary,
    h('div', { class: 'grid two' },
      connectionCard('BigCommerce', bc, [
        ['Store', bc.store_name || (bc.ok ? '(name not available)' : null)],
      ]),
      quickBooksCard(qbo)),
    countsSection(s.records),
    'webhooks' in s ? webhooksSection(s.webhooks) : null,
    'sweep' in s ? sweepSection(s.sweep) : null,
    'backfill' in s && s.backfill && typeof s.backfill === 'object' ? backfillSummary(s.backfill) : null,
    h('p', { class: 'muted' }, 'Checked ', when(s.checked_at, { zone: true }) || 'just now', '. ',
      h('a', { href: '#/status', 'data-refresh': '', text: 'Check again' })),
    rawJson('Details (JSON)', s),
  ];
}

function countsSentence(records) {
  if (!records || records.error) return '';
  const failed = (records.failed || 0) + (records.needs_reauth || 0);
  return failed ? `${failed} record${failed === 1 ? '' : 's'} need${failed === 1 ? 's' : ''} you.` : 'Nothing needs you.';
}

function okBadge(ok) {
  return ok
    ? h('span', { class: 'badge good' }, h('span', { 'aria-hidden': 'true', text: '✓' }), ' Connected')
    : h('span', { class: 'badge bad' }, h('span', { 'aria-hidden': 'true', text: '✕' }), ' Not connected');
}

function warningsList(warnings) {
  if (!Array.isArray(warnings) || !warnings.length) return null;
  return banner('warn', h('ul', {}, warnings.map((w) => h('li', { text: w }))));
}

function connectionCard(name, section, pairs, extra) {
  return h('section', { class: 'card', 'aria-label': name },
    h('h2', {}, name, ' ', okBadge(section.ok === true)),
    facts(pairs),
    section.error ? banner('bad', sentence(connectWords(section.error, 'with the button below'))) : null,
    warningsList(section.warnings),
    extra || null);
}

function quickBooksCard(qbo) {
  // Never connected: no token expiry known and not ok.
  const neverConnected = qbo.ok !== true && !qbo.access_token_expires_at && !qbo.refresh_token_expires_at;
  let connect = null;
  if (qbo.needs_reauth || neverConnected) {
    const out = h('div', { 'aria-live': 'polite' });
    const button = actionButton(qbo.needs_reauth ? 'Connect QuickBooks again' : 'Connect QuickBooks', 'Opening QuickBooks…', async () => {
      replace(out);
      const resp = await api.get(qbo.connect_url || '/oauth/quickbooks/connect');
      if (resp.ok && resp.data && typeof resp.data.authorize_url === 'string') {
        window.location.assign(resp.data.authorize_url);
      } else {
        out.append(problem(resp, 'QuickBooks could not be opened'));
      }
    }, { class: 'primary', id: 'connect-quickbooks' });
    connect = h('div', { class: 'connect' },
      h('p', { text: qbo.needs_reauth
        ? 'QuickBooks access was lost. Records wait and resume by themselves once you connect again.'
        : 'QuickBooks is not connected yet.' }),
      button, out);
  }
  return connectionCard('QuickBooks', qbo, [
    ['Company', qbo.company_name],
    ['Company id', qbo.realm_id],
    ['Access renews', qbo.access_token_expires_at ? when(qbo.access_token_expires_at) : null],
    ['Connection valid until', qbo.refresh_token_expires_at ? when(qbo.refresh_token_expires_at) : null],
    ['Must reconnect by', qbo.refresh_token_hard_expires_at ? when(qbo.refresh_token_hard_expires_at) : null],
  ], connect);
}

function countsSection(records) {
  const section = h('section', { class: 'card', 'aria-labelledby': 'counts-title' },
    h('h2', { id: 'counts-title', text: 'Records by state' }));
  if (!records || records.error) {
    section.append(banner('bad', records?.error || 'The counts could not be read.'));
    return section;
  }
  const list = h('ul', { class: 'counts' });
  for (const state of STATE_ORDER) {
    const n = records[state] ?? 0;
    const s = STATES[state];
    list.append(h('li', {},
      h('a', { href: `#/records?state=${state}`, class: `count ${n ? s.tone : 'muted'}`, 'data-state': state },
        h('span', { class: 'n', text: String(n) }),
        h('span', { class: 'label' }, h('span', { 'aria-hidden': 'true', text: `${s.icon} ` }), s.word))));
  }
  section.append(list, h('p', { class: 'muted', text: 'Select a state to list its records.' }));
  return section;
}

function webhooksSection(w) {
  const section = h('section', { class: 'card', 'aria-labelledby': 'hooks-title' },
    h('h2', { id: 'hooks-title' }, 'BigCommerce webhooks ', okBadge(w && w.ok === true)));
  if (!w || typeof w !== 'object') return section;
  section.append(facts([['Sent to', w.destination]]));
  if (w.error) section.append(banner('bad', w.error));
  if (Array.isArray(w.missing) && w.missing.length) {
    section.append(banner('warn', 'Missing: ', w.missing.join(', ')));
  }
  if (Array.isArray(w.hooks) && w.hooks.length) {
    section.append(h('table', {},
      h('thead', {}, h('tr', {}, h('th', { scope: 'col', text: 'Event' }), h('th', { scope: 'col', text: 'Active' }))),
      h('tbody', {}, w.hooks.map((hook) => h('tr', {},
        h('td', { 'data-label': 'Event', text: hook.scope }),
        h('td', { 'data-label': 'Active' }, hook.is_active ? '✓ yes' : '✕ no'))))));
  }
  return section;
}

function sweepSection(sw) {
  return h('section', { class: 'card', 'aria-labelledby': 'sweep-title' },
    h('h2', { id: 'sweep-title', text: 'Catch-up check (orders changed without a webhook)' }),
    sw && typeof sw === 'object' ? facts([
      ['Last run', when(sw.last_run_at) || 'not yet'],
      ['Looked at changes since', when(sw.checkpoint)],
      ['Found last run', sw.queued_last_run !== undefined ? String(sw.queued_last_run) : null],
      ['Missed webhooks caught so far', sw.missed_total !== undefined ? String(sw.missed_total) : null],
    ]) : h('p', { class: 'muted', text: 'Not run yet.' }));
}

function backfillSummary(b) {
  return h('section', { class: 'card', 'aria-labelledby': 'bf-title' },
    h('h2', { id: 'bf-title', text: 'Import of past orders' }),
    facts([['State', BACKFILL_STATES[b.state] || b.state], ['Orders found', b.orders_seen !== undefined ? String(b.orders_seen) : null]]),
    h('a', { href: '#/backfill', text: 'Open the import' }));
}

// ---- records ------------------------------------------------------------------------------

const PAGE = 20;
const LIST_MAX = 500; // what GET /admin/records returns at most

export async function recordsView({ signal, params, go }) {
  const state = STATES[params.get('state')] ? params.get('state') : '';
  const entity = ENTITIES[params.get('entity')] ? params.get('entity') : '';
  const q = (params.get('q') || '').trim();
  const page = Math.max(1, Number.parseInt(params.get('page') || '1', 10) || 1);

  const stateSelect = h('select', { name: 'state' },
    h('option', { value: '', text: 'All states' }),
    STATE_ORDER.map((s) => h('option', { value: s, text: STATES[s].word, selected: s === state })));
  const entitySelect = h('select', { name: 'entity' },
    h('option', { value: '', text: 'Orders and customers' }),
    Object.entries(ENTITIES).map(([k, v]) => h('option', { value: k, text: `${v}s`, selected: k === entity })));
  const search = h('input', { type: 'search', name: 'q', inputmode: 'numeric', value: q, placeholder: 'e.g. 250' });
  const form = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter records' },
    field('State', stateSelect),
    field('Kind', entitySelect),
    field('Find by BigCommerce id', search),
    h('div', { class: 'actions' },
      h('button', { type: 'submit', text: 'Show' }),
      (state || entity || q) ? h('a', { href: '#/records', class: 'button-link', text: 'Clear' }) : null));
  const navigate = (extra = {}) => {
    const p = new URLSearchParams();
    if (stateSelect.value) p.set('state', stateSelect.value);
    if (entitySelect.value) p.set('entity', entitySelect.value);
    if (search.value.trim()) p.set('q', search.value.trim());
    for (const [k, v] of Object.entries(extra)) p.set(k, v);
    go(`#/records${p.toString() ? `?${p}` : ''}`);
  };
  form.addEventListener('submit', (e) => { e.preventDefault(); navigate(); });
  stateSelect.addEventListener('change', () => navigate());
  entitySelect.addEventListener('change', () => navigate());

  const out = [heading('Records'), form];
  if (q) {
    out.push(...await searchResults(q, entity, signal));
    return out;
  }
  const limit = Math.min(LIST_MAX, page * PAGE + 1);
  const query = new URLSearchParams({ limit: String(limit) });
  if (state) query.set('status', state);
  if (entity) query.set('entity', entity);
  const resp = await api.get(`/admin/records?${query}`, { signal });
  if (!resp.ok) return [...out, problem(resp, 'The records could not be read')];
  const all = resp.data.records || [];
  const rows = all.slice((page - 1) * PAGE, page * PAGE);
  const more = all.length > page * PAGE;
  const filtered = [state && STATES[state].word.toLowerCase(), entity && `${ENTITIES[entity].toLowerCase()}s`].filter(Boolean).join(' ');
  if (!rows.length) {
    out.push(h('p', { class: 'empty', text: page > 1 ? 'No more records.' : `No ${filtered || 'records'} yet.` }));
  } else {
    out.push(h('p', { class: 'muted', text: `Newest first · ${(page - 1) * PAGE + 1}–${(page - 1) * PAGE + rows.length}` }));
    out.push(recordsTable(rows));
  }
  const pager = h('nav', { class: 'pager', 'aria-label': 'Pages' },
    page > 1 ? h('button', { type: 'button', text: '← Newer', on: { click: () => navigate({ page: String(page - 1) }) } }) : null,
    h('span', { text: `Page ${page}` }),
    more ? h('button', { type: 'button', text: 'Older →', on: { click: () => navigate({ page: String(page + 1) }) } }) : null);
  out.push(pager);
  if (!more && (all.length >= LIST_MAX || resp.data.truncated)) {
    out.push(banner('info', 'Only the newest records are listed here. Narrow the list by state or kind, or find a record by its id.'));
  }
  return out;
}

async function searchResults(q, entity, signal) {
  if (!/^\d+$/.test(q)) {
    return [banner('warn', 'BigCommerce ids are whole numbers, like 250. Type the order or customer number.')];
  }
  const kinds = entity ? [entity] : Object.keys(ENTITIES);
  const found = [];
  for (const kind of kinds) {
    const resp = await api.get(`/admin/records/${kind}/${q}`, { signal });
    if (resp.ok) found.push(resp.data);
    else if (resp.status !== 404) return [problem(resp, `${entityWord(kind)} ${q} could not be read`)];
  }
  if (!found.length) {
    return [h('p', { class: 'empty', text: `No ${kinds.map((k) => entityWord(k).toLowerCase()).join(' or ')} ${q} has reached the connector.` })];
  }
  return [recordsTable(found)];
}

function recordsTable(rows) {
  return h('table', { class: 'records' },
    h('caption', { class: 'sr-only', text: 'Sync records' }),
    h('thead', {}, h('tr', {},
      ['Record', 'State', 'In QuickBooks', 'Tries', 'Last change', 'Problem'].map((t) => h('th', { scope: 'col', text: t })))),
    h('tbody', {}, rows.map((r) => {
      const docs = documentsOf(r);
      const failure = r.last_error ? explainFailure(r).what : '';
      return h('tr', { 'data-record': `${r.entity}/${r.id}` },
        h('th', { scope: 'row', 'data-label': 'Record' },
          h('a', { href: `#/record/${r.entity}/${encodeURIComponent(r.id)}`, text: `${entityWord(r.entity)} ${r.id}` })),
        h('td', { 'data-label': 'State' }, stateBadge(r.state)),
        h('td', { 'data-label': 'In QuickBooks' }, docs.length ? docs.map((d) => `${docWord(d.type)} ${d.doc_number || `(id ${d.qbo_id})`}`).join(', ') : '—'),
        h('td', { 'data-label': 'Tries', text: String(r.attempts ?? 0) }),
        h('td', { 'data-label': 'Last change' }, when(r.updated_at) || '—'),
        h('td', { 'data-label': 'Problem', class: 'problem' }, failure ? shorten(failure, 140) : '—'));
    })));
}

function shorten(text, n) {
  return text.length > n ? `${text.slice(0, n - 1)}…` : text;
}

// ---- one record ---------------------------------------------------------------------------

export async function recordView({ signal, params, go }) {
  const entity = params.get('entity');
  const id = params.get('id');
  const title = `${entityWord(entity)} ${id}`;
  const resp = await api.get(`/admin/records/${encodeURIComponent(entity)}/${encodeURIComponent(id)}`, { signal });
  if (resp.status === 404) {
    return [heading(title), banner('info', `${title} has not reached the connector (no record). `,
      h('a', { href: '#/records', text: 'Back to the records' }))];
  }
  if (!resp.ok) return [heading(title), problem(resp, `${title} could not be read`)];
  const container = h('div');
  const render = (record, notice) => replace(container, ...recordBody(record, notice, { go }));
  render(resp.data);
  return [h('p', { class: 'crumbs' }, h('a', { href: '#/records', text: '← Records' })), heading(title), container];

  function recordBody(record, notice) {
    const state = STATES[record.state];
    const out = h('div', { 'aria-live': 'polite' });
    if (notice) out.append(notice);
    const replay = actionButton('Replay', 'Replaying…', async () => {
      replace(out);
      const r = await api.post(`/admin/replay/${encodeURIComponent(entity)}/${encodeURIComponent(id)}`);
      if (r.ok) {
        const now = STATES[r.data.state]?.word || r.data.state;
        render(r.data, banner(r.data.state === 'posted' ? 'good' : r.data.state === 'failed' ? 'bad' : 'info',
          `Replayed. It is now: ${now}.`));
        container.querySelector('h2')?.focus();
      } else {
        out.append(problem(r, 'The replay did not run'));
      }
    }, { class: 'primary', id: 'replay' });
    return [
      h('section', { class: 'card' },
        h('h2', { tabindex: '-1' }, stateBadge(record.state)),
        h('p', { text: state?.meaning || '' }),
        facts([
          ['Next try', record.state === 'retrying' && record.next_attempt_at
            ? h('span', {}, when(record.next_attempt_at), ` (${fromNow(record.next_attempt_at)})`) : null],
          ['Tries', String(record.attempts ?? 0)],
          ['First seen', when(record.created_at)],
          ['Last change', when(record.updated_at)],
        ]),
        h('div', { class: 'actions' }, replay,
          entity === 'order' ? h('a', { href: `#/mapping?preview=${encodeURIComponent(id)}`, class: 'button-link', text: 'Preview its invoice' }) : null),
        h('p', { class: 'hint', text: 'Replay runs it again now. It never makes a second copy in QuickBooks: a document already there is checked and updated.' }),
        out),
      record.last_error ? failureSection(record) : null,
      documentsSection(record),
      timelineSection(record),
      rawJson('Details (JSON)', record),
    ];
  }
}

function failureSection(record) {
  const { what, todo, action } = explainFailure(record);
  const tone = record.state === 'failed' || record.state === 'needs_reauth' ? 'bad' : 'warn';
  return h('section', { class: `card failure ${tone}`, 'aria-labelledby': 'failure-title' },
    h('h2', { id: 'failure-title', text: record.state === 'retrying' ? 'The last try did not work' : 'What went wrong' }),
    h('p', { class: 'what', text: what }),
    todo ? h('h3', { text: 'What to do' }) : null,
    todo ? h('p', { class: 'todo', text: todo }) : null,
    action ? h('p', {}, h('a', { href: action.href, class: 'button-link', text: action.text })) : null);
}

function documentsSection(record) {
  const docs = documentsOf(record);
  const section = h('section', { class: 'card', 'aria-labelledby': 'docs-title' },
    h('h2', { id: 'docs-title', text: 'In QuickBooks' }));
  if (!docs.length) {
    section.append(h('p', { class: 'muted', text: 'Nothing is in QuickBooks for it yet.' }));
    return section;
  }
  section.append(h('table', { class: 'docs' },
    h('thead', {}, h('tr', {}, ['Document', 'Number', 'Amount', 'State', 'Open'].map((t) => h('th', { scope: 'col', text: t })))),
    h('tbody', {}, docs.map((d) => {
      const link = qboLink(d.type, d.qbo_id);
      return h('tr', {},
        h('th', { scope: 'row', 'data-label': 'Document', text: docWord(d.type) }),
        h('td', { 'data-label': 'Number', text: d.doc_number || `id ${d.qbo_id}` }),
        h('td', { 'data-label': 'Amount', text: money(d.total ?? d.amount, d.currency) || '—' }),
        h('td', { 'data-label': 'State', text: d.state || (d.source ? `from ${d.source}` : record.state === 'posted' ? 'up to date' : '—') }),
        h('td', { 'data-label': 'Open' }, link
          ? externalLink(link, 'Open in QuickBooks', `Open ${docWord(d.type)} ${d.doc_number || d.qbo_id} in QuickBooks (new tab)`)
          : '—'));
    }))));
  section.append(h('p', { class: 'hint', text: 'Links open QuickBooks Online. A sandbox company opens on its own sandbox address instead.' }));
  return section;
}

function timelineSection(record) {
  const audit = Array.isArray(record.audit) ? record.audit : [];
  return h('section', { class: 'card', 'aria-labelledby': 'history-title' },
    h('h2', { id: 'history-title', text: 'History' }),
    audit.length
      ? h('ol', { class: 'timeline' }, audit.map((entry) => h('li', { class: `step ${entry.step}` },
        h('div', { class: 'when' }, when(entry.at)),
        h('div', { class: 'what', text: stepWords(entry, record) }),
        entry.detail && Object.keys(entry.detail).length ? rawJson('details', entry.detail) : null)))
      : h('p', { class: 'muted', text: 'No history yet.' }),
    audit.length ? h('p', { class: 'hint', text: 'Oldest first.' }) : null);
}

// ---- mapping ------------------------------------------------------------------------------

export async function mappingView({ signal, params }) {
  const resp = await api.get('/admin/mapping', { signal });
  if (!resp.ok) return [heading('Mapping'), problem(resp, 'The mapping could not be read')];
  // The rules themselves (a reply that wraps them as `{"mapping": …}` is unwrapped).
  const rules = resp.data && resp.data.mapping && !('version' in resp.data) ? resp.data.mapping : resp.data;
  const original = JSON.stringify(rules, null, 2);
  const editor = h('textarea', { name: 'mapping', rows: '22', spellcheck: 'false', autocomplete: 'off', class: 'code', value: original });
  const out = h('div', { 'aria-live': 'polite', id: 'mapping-result' });
  const save = actionButton('Check and save', 'Checking…', async () => {
    replace(out);
    let value;
    try {
      value = JSON.parse(editor.value);
    } catch (err) {
      out.append(banner('bad', h('strong', { text: 'This is not valid JSON, so nothing was saved. ' }), String(err.message)));
      editor.focus();
      return;
    }
    const r = await api.put('/admin/mapping', value);
    if (r.ok) {
      editor.value = JSON.stringify(r.data, null, 2);
      out.append(banner('good', h('strong', { text: 'Saved. ' }),
        'New orders use these rules. Orders that failed before stay failed until you replay them: ',
        h('a', { href: '#/records?state=failed', text: 'see the failed records' }), '.'));
    } else if (r.status === 400 && Array.isArray(r.data?.problems)) {
      out.append(banner('bad',
        h('strong', { text: `Not saved: ${r.data.problems.length} problem${r.data.problems.length === 1 ? '' : 's'} to fix.` }),
        h('ul', { class: 'problems' }, r.data.problems.map((p) => h('li', {},
          p.path ? h('code', { text: p.path }) : null, p.path ? ' — ' : null, p.message)))));
    } else {
      out.append(problem(r, 'Not saved'));
    }
  }, { class: 'primary', id: 'save-mapping' });
  const tidy = h('button', { type: 'button', text: 'Tidy up', on: { click: () => {
    try { editor.value = JSON.stringify(JSON.parse(editor.value), null, 2); } catch { /* left as typed */ }
  } } });
  const undo = h('button', { type: 'button', text: 'Undo my changes', on: { click: () => { editor.value = original; replace(out); } } });

  return [
    heading('Mapping'),
    h('section', { class: 'card', 'aria-labelledby': 'rules-title' },
      h('h2', { id: 'rules-title', text: 'Rules' }),
      h('p', { text: 'Which QuickBooks items, accounts and classes each order line goes to. Names must exist in QuickBooks exactly as written there.' }),
      field('Mapping rules (JSON)', editor),
      h('div', { class: 'actions' }, save, tidy, undo),
      out),
    previewSection(params.get('preview') || ''),
  ];
}

function previewSection(initial) {
  const input = h('input', { type: 'text', name: 'order', inputmode: 'numeric', value: initial, required: true, pattern: '[0-9]+' });
  const out = h('div', { 'aria-live': 'polite', id: 'preview-result' });
  const button = h('button', { type: 'submit', id: 'preview', text: 'Preview' });
  const form = h('form', { class: 'inline' }, field('Order number', input), h('div', { class: 'actions' }, button));
  const run = async () => {
    const id = input.value.trim();
    replace(out);
    if (!/^\d+$/.test(id)) {
      out.append(banner('warn', 'Type an order number, like 250.'));
      return;
    }
    button.disabled = true;
    out.append(h('p', { class: 'loading', text: 'Reading the order and applying the rules…' }));
    try {
      const r = await api.get(`/admin/preview/order/${id}`);
      replace(out, ...(r.ok ? invoicePreview(r.data) : [problem(r, `Order ${id} cannot be previewed`)]));
    } finally {
      button.disabled = false;
    }
  };
  form.addEventListener('submit', (e) => { e.preventDefault(); run().catch(ignoreAuth); });
  if (initial) queueMicrotask(() => run().catch(ignoreAuth));
  return h('section', { class: 'card', 'aria-labelledby': 'preview-title' },
    h('h2', { id: 'preview-title', text: 'Preview an order’s invoice' }),
    h('p', { text: 'Shows the invoice the saved rules would make for an order. Nothing is sent to QuickBooks.' }),
    form, out);
}

function ignoreAuth(err) {
  if (!(err instanceof api.Unauthorized) && !(err instanceof api.Unreachable)) throw err;
}

function refName(ref) {
  if (!ref) return '';
  return ref.name || `#${ref.value}`;
}

function invoicePreview(p) {
  const inv = p.invoice || {};
  const currency = inv.CurrencyRef?.value;
  const lines = Array.isArray(inv.Line) ? inv.Line : [];
  const rows = lines.filter((l) => l.DetailType !== 'SubTotalLineDetail').map((l) => {
    const d = l.SalesItemLineDetail;
    if (d) {
      return h('tr', {},
        h('td', { 'data-label': 'Line', text: l.Description || '' }),
        h('td', { 'data-label': 'Item', text: refName(d.ItemRef) }),
        h('td', { 'data-label': 'Class', text: refName(d.ClassRef) || '—' }),
        h('td', { 'data-label': 'Qty', class: 'num', text: quantity(d.Qty) }),
        h('td', { 'data-label': 'Unit price', class: 'num', text: money(d.UnitPrice, currency) }),
        h('td', { 'data-label': 'Amount', class: 'num', text: money(l.Amount, currency) }));
    }
    const disc = l.DiscountLineDetail;
    if (disc) {
      return h('tr', { class: 'discount' },
        h('td', { 'data-label': 'Line', text: l.Description || 'Discount' }),
        h('td', { 'data-label': 'Item', text: disc.DiscountAccountRef?.name ? `Account ${disc.DiscountAccountRef.name}` : 'Discount account' }),
        h('td', { 'data-label': 'Class', text: refName(disc.ClassRef) || '—' }),
        h('td', { 'data-label': 'Qty', class: 'num', text: '' }),
        h('td', { 'data-label': 'Unit price', class: 'num', text: disc.PercentBased ? `${quantity(disc.DiscountPercent)} %` : '' }),
        h('td', { 'data-label': 'Amount', class: 'num', text: `−${money(l.Amount, currency)}` }));
    }
    return h('tr', {},
      h('td', { 'data-label': 'Line', text: l.Description || l.DetailType }),
      h('td', { 'data-label': 'Item', text: '' }), h('td', { 'data-label': 'Class', text: '' }),
      h('td', { 'data-label': 'Qty', text: '' }), h('td', { 'data-label': 'Unit price', text: '' }),
      h('td', { 'data-label': 'Amount', class: 'num', text: money(l.Amount, currency) }));
  });
  const tax = inv.TxnTaxDetail?.TotalTax;
  const customer = p.customer || {};
  const matched = customer.matched_by === 'created'
    ? 'a new QuickBooks customer would be created'
    : `found by ${customer.matched_by}`;
  return [
    facts([
      ['Invoice number', inv.DocNumber],
      ['Date', day(inv.TxnDate)],
      ['Customer', customer.display_name ? `${customer.display_name} (${matched})` : null],
      ['Currency', currency],
    ]),
    h('table', { class: 'invoice' },
      h('caption', { text: `Invoice for order ${p.order_id}` }),
      h('thead', {}, h('tr', {}, ['Line', 'Item', 'Class', 'Qty', 'Unit price', 'Amount'].map((t) => h('th', { scope: 'col', text: t })))),
      h('tbody', {}, rows),
      h('tfoot', {},
        tax !== undefined && tax !== null ? h('tr', {}, h('th', { scope: 'row', colspan: '5', text: 'Tax (sent as a total)' }), h('td', { class: 'num', text: money(tax, currency) })) : null,
        h('tr', { class: 'total' }, h('th', { scope: 'row', colspan: '5', text: 'Total' }), h('td', { class: 'num', text: money(p.total, currency) })))),
    h('p', { class: 'hint', text: 'Preview only: nothing was posted.' }),
    rawJson('Invoice as sent to QuickBooks (JSON)', p.invoice),
  ];
}

// ---- backfill -----------------------------------------------------------------------------

export async function backfillView({ signal, go }) {
  const resp = await api.get('/admin/backfill', { signal });
  if (resp.status === 404) {
    return [heading('Import past orders'), banner('info', 'This connector has no import of past orders.')];
  }
  if (!resp.ok) return [heading('Import past orders'), problem(resp, 'The import could not be read')];
  const b = resp.data || {};
  const running = b.state === 'running';
  const done = (b.orders_posted || 0) + (b.orders_already_synced || 0);
  const seen = b.orders_seen || 0;
  const progress = h('progress', { max: String(Math.max(seen, 1)), value: String(Math.min(done, Math.max(seen, 1))), 'aria-labelledby': 'bf-progress-label' });
  if (running && !seen) progress.removeAttribute('value'); // still counting: indeterminate
  const out = h('div', { 'aria-live': 'polite' });

  const status = h('section', { class: 'card', 'aria-labelledby': 'bf-status' },
    h('h2', { id: 'bf-status', text: BACKFILL_STATES[b.state] || String(b.state) }),
    h('p', { id: 'bf-progress-label', text: seen ? `${done} of ${seen} orders found so far are in QuickBooks.` : running ? 'Looking for orders…' : 'No orders looked at yet.' }),
    progress,
    facts([
      ['From', when(b.since)],
      ['Until', b.since ? (when(b.until) || 'now') : null],
      ['Pages read', b.pages_done !== undefined ? String(b.pages_done) : null],
      ['Orders found', b.orders_seen !== undefined ? String(b.orders_seen) : null],
      ['Sent to be posted', b.orders_queued !== undefined ? String(b.orders_queued) : null],
      ['Already in QuickBooks', b.orders_already_synced !== undefined ? String(b.orders_already_synced) : null],
      ['Posted', b.orders_posted !== undefined ? String(b.orders_posted) : null],
      ['Started', when(b.started_at)],
      ['Finished', when(b.finished_at)],
    ]),
    b.error ? banner('bad', b.error) : null,
    running ? h('div', { class: 'actions' }, actionButton('Cancel the import', 'Cancelling…', async () => {
      const r = await api.del('/admin/backfill');
      if (r.ok) go('#/backfill', { replace: true });
      else out.append(problem(r, 'The import was not cancelled'));
    }, { class: 'danger' })) : null,
    out);

  const since = h('input', { type: 'date', name: 'since', required: true });
  const until = h('input', { type: 'date', name: 'until' });
  const startOut = h('div', { 'aria-live': 'polite' });
  const start = h('button', { type: 'submit', class: 'primary', text: 'Start the import', disabled: running });
  const form = h('form', { class: 'inline' },
    field('From (first day)', since),
    field('Until (last day, optional)', until, 'Leave empty to import up to now.'),
    h('div', { class: 'actions' }, start), startOut);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    replace(startOut);
    if (!since.value) return;
    // Days are the person's own: from the start of the first day to the end of the last,
    // in the browser's time zone.
    const from = new Date(`${since.value}T00:00:00`);
    const to = until.value ? new Date(`${until.value}T23:59:59`) : null;
    if (to && to < from) {
      startOut.append(banner('warn', 'The last day is before the first day.'));
      return;
    }
    start.disabled = true;
    try {
      const r = await api.post('/admin/backfill', { since: from.toISOString(), until: to ? to.toISOString() : null });
      if (r.ok) go('#/backfill', { replace: true });
      else if (r.status === 409) startOut.append(banner('warn', 'An import is already running. Wait for it to finish or cancel it.'));
      else startOut.append(problem(r, 'The import did not start'));
    } catch (err) {
      ignoreAuth(err);
    } finally {
      if (start.isConnected) start.disabled = running;
    }
  });

  if (running) {
    const timer = setTimeout(() => go('#/backfill', { replace: true, quiet: true }), 3000);
    signal.addEventListener('abort', () => clearTimeout(timer), { once: true });
  }
  return [
    heading('Import past orders'),
    h('p', { text: 'Brings orders placed before the connector was set up into QuickBooks. Orders already there are not posted again.' }),
    status,
    h('section', { class: 'card', 'aria-labelledby': 'bf-start' },
      h('h2', { id: 'bf-start', text: 'Start an import' }), form),
  ];
}
