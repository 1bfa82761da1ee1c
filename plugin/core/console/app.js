// The console's entry point: sign-in, navigation between views (by the address's #fragment,
// so the browser's Back button and bookmarks work), and the backfill link when the connector
// has that route.

import * as api from './api.js';
import { replace, banner } from './dom.js';
import { timeZone } from './words.js';
import { signInView, statusView, recordsView, recordView, mappingView, backfillView } from './views.js';

const main = document.getElementById('main');
const nav = document.getElementById('nav');

let current = null; // AbortController of the view on screen
let signInMessage = null;

/** Routes: `#/name/a/b?x=y` → view and params. */
function parse(hash) {
  const [path, query = ''] = hash.replace(/^#/, '').split('?');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  const params = new URLSearchParams(query);
  switch (parts[0]) {
    case 'records': return { name: 'records', view: recordsView, params };
    case 'record':
      if (parts.length === 3) {
        params.set('entity', parts[1]);
        params.set('id', parts[2]);
        return { name: 'records', view: recordView, params };
      }
      break;
    case 'mapping': return { name: 'mapping', view: mappingView, params };
    case 'backfill': return { name: 'backfill', view: backfillView, params };
    case 'status': return { name: 'status', view: statusView, params };
    default: break;
  }
  return { name: 'status', view: statusView, params };
}

/** Goes to `hash`. `replace`: without a new history entry; `quiet`: keep focus (refresh). */
function go(hash, { replace: inPlace = false, quiet = false } = {}) {
  if (location.hash === hash) {
    render({ quiet });
  } else if (inPlace) {
    history.replaceState(null, '', hash);
    render({ quiet });
  } else {
    location.hash = hash;
  }
}

async function render({ quiet = false } = {}) {
  current?.abort();
  const controller = new AbortController();
  current = controller;
  if (!api.token()) {
    showSignIn();
    return;
  }
  nav.hidden = false;
  const route = parse(location.hash || '#/status');
  for (const a of nav.querySelectorAll('a[data-view]')) {
    if (a.dataset.view === route.name) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  if (!quiet) {
    main.setAttribute('aria-busy', 'true');
    main.dataset.view = route.name;
  }
  try {
    const nodes = await route.view({ signal: controller.signal, params: route.params, go });
    if (controller.signal.aborted) return;
    const focused = quiet ? document.activeElement : null;
    replace(main, ...nodes);
    main.dataset.view = route.name;
    main.removeAttribute('aria-busy');
    if (quiet && focused && focused.id && document.getElementById(focused.id)) {
      document.getElementById(focused.id).focus();
    } else if (!quiet) {
      main.querySelector('h1')?.focus();
    }
  } catch (err) {
    if (controller.signal.aborted || err instanceof api.Unauthorized) return;
    main.removeAttribute('aria-busy');
    replace(main, banner('bad', `Something went wrong in the console: ${err.message}. Reload the page.`));
    throw err;
  }
}

function showSignIn() {
  nav.hidden = true;
  main.dataset.view = 'signin';
  main.removeAttribute('aria-busy');
  replace(main, ...signInView({
    message: signInMessage,
    onToken: () => {
      signInMessage = null;
      checkBackfill();
      if (!location.hash || location.hash === '#/signin') go('#/status', { replace: true });
      else render();
    },
  }));
}

/** The backfill view exists only where the connector has `/admin/backfill` (a 404 hides it). */
async function checkBackfill() {
  const link = nav.querySelector('a[data-view="backfill"]');
  try {
    const resp = await api.get('/admin/backfill');
    link.hidden = resp.status === 404;
  } catch {
    link.hidden = true;
  }
}

api.whenUnauthorized((message) => {
  api.forgetToken();
  signInMessage = message;
  current?.abort();
  showSignIn();
});

document.getElementById('sign-out').addEventListener('click', () => {
  api.forgetToken();
  signInMessage = null;
  current?.abort();
  showSignIn();
});

// "Check again" links re-run the view on screen.
main.addEventListener('click', (event) => {
  const a = event.target.closest('a[data-refresh]');
  if (a) {
    event.preventDefault();
    render();
  }
});

window.addEventListener('hashchange', () => render());
document.getElementById('tz').textContent = timeZone;

if (api.token()) checkBackfill();
render();
