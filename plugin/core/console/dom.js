// Small DOM helpers. Every text the connector or a store sends is set as text, never parsed
// as HTML: nothing an order or an error message contains can become markup.

/**
 * Creates an element. `props`: attributes (`class`, `for`, `aria-*`, `data-*`, …), `on`
 * (event name → handler) and `text`. Children: nodes, strings, or null/false (skipped).
 */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'on') {
      for (const [event, handler] of Object.entries(value)) el.addEventListener(event, handler);
    } else if (key === 'text') {
      el.textContent = String(value);
    } else if (key === 'value') {
      el.value = value;
    } else if (value === true) {
      el.setAttribute(key, '');
    } else {
      el.setAttribute(key, String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

/** Replaces an element's children. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A message box: kind is `good`, `warn`, `bad` or `info`. Alerts are announced. */
export function banner(kind, ...children) {
  const role = kind === 'bad' ? 'alert' : 'status';
  return h('div', { class: `banner ${kind}`, role }, ...children);
}

/** A `<details>` disclosure holding pretty-printed JSON, for whoever asks for it. */
export function rawJson(label, value) {
  return h('details', { class: 'raw' },
    h('summary', { text: label }),
    h('pre', { text: JSON.stringify(value, null, 2) }));
}

/** A definition list from [term, description] pairs; pairs with a null description are left out. */
export function facts(pairs) {
  const dl = h('dl', { class: 'facts' });
  for (const [term, desc] of pairs) {
    if (desc === null || desc === undefined || desc === '') continue;
    dl.append(h('dt', { text: term }), h('dd', {}, desc));
  }
  return dl;
}

/** A labelled form field: the label is tied to the control by id. */
export function field(label, control, hint) {
  const id = control.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  control.id = id;
  let hintEl = null;
  if (hint) {
    hintEl = h('span', { class: 'hint', id: `${id}-hint`, text: hint });
    control.setAttribute('aria-describedby', hintEl.id);
  }
  return h('div', { class: 'field' }, h('label', { for: id, text: label }), control, hintEl);
}
