// The console's shell: sign in and out, the navigation, and which view is shown (from the
// URL's fragment, e.g. /console#audit; the key is never part of the URL).

import { api, session } from './api.js';
import { h } from './dom.js';
import certificates from './certificates.js';
import projects from './projects.js';
import rotate from './rotate.js';
import check from './check.js';
import revocations from './revocations.js';
import audit from './audit.js';
import keys from './keys.js';

const VIEWS = [certificates, projects, rotate, check, revocations, audit, keys];

const $ = (id) => document.getElementById(id);

function current() {
  const id = location.hash.slice(1);
  return VIEWS.find((v) => v.id === id) || VIEWS[0];
}

function showSignIn(message) {
  $('app').hidden = true;
  $('view').replaceChildren();
  $('sign-out').hidden = true;
  $('sign-in').hidden = false;
  $('sign-in-error').textContent = message || '';
  document.title = 'Sign in · certgate console';
  $('admin-key').focus();
}

let rendering = 0;
async function showView() {
  const view = current();
  $('sign-in').hidden = true;
  $('app').hidden = false;
  $('sign-out').hidden = false;
  for (const a of $('nav').querySelectorAll('a')) {
    if (a.dataset.view === view.id) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  document.title = `${view.title} · certgate console`;
  const heading = h('h2', { id: 'view-title', tabindex: '-1' }, view.title);
  const section = h('section', { 'aria-labelledby': 'view-title', class: 'view' }, heading);
  $('view').replaceChildren(section);
  rendering += 1;
  const mine = rendering;
  // A view renders into its section; a newer navigation makes an older render moot.
  await view.render(section, () => mine === rendering);
}

function buildNav() {
  $('nav').replaceChildren(...VIEWS.map((v) => h('li', {},
    h('a', { href: `#${v.id}`, 'data-view': v.id }, v.title))));
}

$('sign-in-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const input = $('admin-key');
  const key = input.value.trim();
  const err = $('sign-in-error');
  err.textContent = '';
  const button = ev.target.querySelector('button');
  button.disabled = true;
  try {
    // Any read proves the key; the list of keys is small.
    await api('GET', '/organization/admin_api_keys?limit=1', undefined, key);
    session.signIn(key);
    input.value = '';
    await showView();
    $('view-title').focus();
  } catch (e) {
    // The key stays in the field, so a typo can be fixed.
    err.textContent = e.message;
  } finally {
    button.disabled = false;
  }
});

$('sign-out').addEventListener('click', () => {
  session.signOut();
  showSignIn('Signed out. The key was removed from this tab.');
});

window.addEventListener('hashchange', () => {
  if (session.key()) showView();
});

buildNav();
if (session.key()) showView();
else showSignIn();
