// Admin keys: the organization's keys, a new one (its value shown once, here only), revoke.

import { api, listAll, session } from './api.js';
import { confirmButton, field, h, notice, table, when } from './dom.js';

export default {
  id: 'keys',
  title: 'Admin keys',
  async render(section, live) {
    const msg = notice();
    const list = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
    const created = h('div');
    section.append(msg.el, list, createForm(msg, created, () => load()), created);

    async function load() {
      let keys;
      try {
        keys = await listAll('/organization/admin_api_keys');
      } catch (e) {
        if (live()) msg.error(e);
        return;
      }
      if (!live()) return;
      const mine = (session.key() || '').slice(-4);
      list.replaceChildren(table('Admin API keys', ['Name', 'ID', 'Key', 'Created', 'Expires', 'Last used', 'Actions'], keys.map((k) => h('tr', {},
        h('th', { scope: 'row' }, k.name, k.redacted_value.endsWith(mine) ? h('small', { class: 'block muted' }, 'the key you signed in with') : null),
        h('td', {}, h('code', {}, k.id)),
        h('td', {}, h('code', {}, k.redacted_value)),
        h('td', {}, when(k.created_at)),
        h('td', {}, k.expires_at ? when(k.expires_at) : 'never'),
        h('td', {}, k.last_used_at ? when(k.last_used_at) : 'never'),
        h('td', {}, confirmButton('Revoke', 'Confirm revoke', async () => {
          try {
            await api('DELETE', `/organization/admin_api_keys/${k.id}`);
            msg.ok(`Revoked ${k.name} (${k.id}). It stops working at once.`);
            await load();
          } catch (e) {
            msg.error(e);
          }
        }, { class: 'small', 'aria-label': `Revoke ${k.name}` }))))));
    }
    await load();
  },
};

function createForm(pageMsg, out, reload) {
  const msg = notice();
  const name = h('input', { type: 'text', required: true, maxlength: '256' });
  const days = h('input', { type: 'number', min: '1', max: '365', step: '1', inputmode: 'numeric' });
  const form = h('form', { class: 'card stack' },
    h('h3', {}, 'Create an admin key'),
    field('Key name', name)[0],
    field('Expires in days', days, 'Optional, 1 to 365; empty: never.')[0],
    h('div', {}, h('button', { type: 'submit' }, 'Create key')),
    msg.el);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const body = { name: name.value };
    if (days.value) body.expires_in_seconds = Number(days.value) * 86400;
    try {
      const k = await api('POST', '/organization/admin_api_keys', body);
      name.value = '';
      days.value = '';
      msg.clear();
      pageMsg.clear();
      showOnce(out, k);
      await reload();
    } catch (e) {
      msg.error(e);
    }
  });
  return form;
}

/** The new key's value, this once: in a read-only field to copy, gone on "Done" or leaving. */
function showOnce(out, k) {
  const value = h('input', { type: 'text', readonly: true, value: k.value, class: 'secret', spellcheck: 'false' });
  const copied = h('span', { class: 'muted', 'aria-live': 'polite' });
  const copy = h('button', { type: 'button' }, 'Copy');
  copy.addEventListener('click', async () => {
    value.select();
    try {
      await navigator.clipboard.writeText(value.value);
      copied.textContent = ' Copied.';
    } catch {
      copied.textContent = ' Selected: copy it with your keyboard.';
    }
  });
  const done = h('button', { type: 'button', class: 'quiet' }, 'Done');
  done.addEventListener('click', () => out.replaceChildren());
  out.replaceChildren(h('div', { class: 'card once', role: 'status' },
    h('h3', {}, `New key: ${k.name} (${k.id})`),
    h('p', {}, 'Copy it now: this is the only time it is shown. certgate keeps only its hash.'),
    field('New admin key value', value)[0],
    h('div', {}, copy, ' ', done, copied)));
}
