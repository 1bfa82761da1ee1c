// Calls to the connector's JSON routes (CONTRACT §3), always with the admin bearer token.
//
// - The token is typed once and kept in sessionStorage: it lives as long as the tab, and is
//   never written anywhere else.
// - A 401 means the token is wrong or was changed: the token is forgotten and the page goes
//   back to the sign-in with a message.
// - A network error (the connector cannot be reached) is shown in the banner; reads are tried
//   again with a growing pause (1 s, 2 s, 4 s … up to 30 s). Changes (PUT, POST, DELETE) are
//   not repeated by themselves: the person is told, and presses the button again.

const TOKEN_KEY = 'ml-connector.admin-token';

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(value) {
  sessionStorage.setItem(TOKEN_KEY, value);
}

export function forgetToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

/** Thrown when the connector answered 401: the caller stops; the sign-in is already shown. */
export class Unauthorized extends Error {
  constructor() {
    super('the admin token was refused');
    this.name = 'Unauthorized';
  }
}

/** Thrown when a change could not be sent because the connector could not be reached. */
export class Unreachable extends Error {
  constructor(cause) {
    super('the connector could not be reached');
    this.name = 'Unreachable';
    this.cause = cause;
  }
}

/** Set by the app: called on every 401 (with a message for the sign-in page). */
let onUnauthorized = () => {};
export function whenUnauthorized(handler) {
  onUnauthorized = handler;
}

const networkBanner = () => document.getElementById('network');

function showNetworkProblem(seconds) {
  const el = networkBanner();
  el.textContent = `The connector cannot be reached (network error). Trying again in ${seconds} s…`;
  el.hidden = false;
}

function clearNetworkProblem() {
  const el = networkBanner();
  if (!el.hidden) el.hidden = true;
}

function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(timer);
      reject(signal.reason);
    }, { once: true });
  });
}

/**
 * Sends one request. Resolves to `{ status, ok, data }` (`data`: the parsed JSON body, or
 * null). `signal` aborts a pending retry when the person moves to another view.
 */
export async function call(method, path, { body, signal, tokenOverride } = {}) {
  const headers = { Accept: 'application/json' };
  const bearer = tokenOverride ?? token();
  if (bearer) headers.Authorization = `Bearer ${bearer}`;
  const init = { method, headers, cache: 'no-store', credentials: 'omit', signal };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = typeof body === 'string' ? body : JSON.stringify(body);
  }
  let pause = 1000;
  for (;;) {
    let resp;
    try {
      resp = await fetch(path, init);
    } catch (err) {
      if (signal?.aborted) throw err;
      if (method !== 'GET') {
        showNetworkProblem(0);
        networkBanner().textContent =
          'The connector cannot be reached (network error): nothing was changed. Check the connection and press the button again.';
        throw new Unreachable(err);
      }
      showNetworkProblem(pause / 1000);
      await sleep(pause, signal);
      pause = Math.min(pause * 2, 30000);
      continue;
    }
    clearNetworkProblem();
    const text = await resp.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = { error: 'not_json', message: text.slice(0, 300) };
    }
    if (resp.status === 401) {
      onUnauthorized('The connector refused the admin token. Sign in again with the current admin_token.');
      throw new Unauthorized();
    }
    return { status: resp.status, ok: resp.ok, data };
  }
}

export const get = (path, opts) => call('GET', path, opts);
export const post = (path, body, opts) => call('POST', path, { ...opts, body });
export const put = (path, body, opts) => call('PUT', path, { ...opts, body });
export const del = (path, opts) => call('DELETE', path, opts);

/** The connector's own explanation of an error response, or a generic one. */
export function errorText(resp) {
  const d = resp?.data;
  if (d && typeof d.message === 'string' && d.message) return d.message;
  return `The connector answered HTTP ${resp?.status ?? '?'} without an explanation.`;
}
