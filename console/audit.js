// Audit log: every change, newest first, filtered by event type, project and time.

import { api, listAll, projects, query } from './api.js';
import { field, h, notice, table, when } from './dom.js';

const TYPES = [
  'certificate.created', 'certificate.updated', 'certificate.deleted',
  'certificates.activated', 'certificates.deactivated',
  'certificate.revoked', 'certificate.unrevoked',
  'certificate.crl_updated', 'certificate.crl_deleted', 'certificate.crl_fetched',
  'project.created', 'project.updated', 'project.archived',
  'api_key.created', 'api_key.deleted',
];

/** A `datetime-local` value (the browser's time zone) → Unix seconds, or undefined. */
function seconds(input) {
  if (!input.value) return undefined;
  const ms = new Date(input.value).getTime();
  return Number.isNaN(ms) ? undefined : Math.floor(ms / 1000);
}

/** What an event is about, in a few words, from its payload. */
function about(ev) {
  const p = ev[ev.type] || {};
  if (Array.isArray(p.certificates)) return p.certificates.map((c) => `${c.name || '(no name)'} (${c.id})`).join(', ');
  if (p.sha256_fingerprint) return `${p.sha256_fingerprint.slice(0, 16)}…${p.reason ? `: ${p.reason}` : ''}`;
  if (p.changes_requested) return `${p.id} → ${p.changes_requested.title}`;
  if (p.data && p.data.name) return `${p.data.name} (${p.id})`;
  if (p.revoked_count !== undefined) return `${p.id}: ${p.revoked_count} revoked serials`;
  if (p.name) return `${p.name} (${p.id})`;
  return p.id || '';
}

export default {
  id: 'audit',
  title: 'Audit log',
  async render(section, live) {
    const msg = notice();
    section.append(msg.el);
    let projs = [];
    let keyNames = new Map();
    try {
      const [p, k] = await Promise.all([projects(), listAll('/organization/admin_api_keys')]);
      projs = p;
      keyNames = new Map(k.map((x) => [x.id, x.name]));
    } catch (e) {
      if (live()) msg.error(e);
    }
    if (!live()) return;
    const type = h('select', {}, h('option', { value: '' }, 'All events'), TYPES.map((t) => h('option', { value: t }, t)));
    const project = h('select', {}, h('option', { value: '' }, 'All projects'), projs.map((p) => h('option', { value: p.id }, p.name)));
    const from = h('input', { type: 'datetime-local' });
    const to = h('input', { type: 'datetime-local' });
    const form = h('form', { class: 'filters' },
      field('Event type', type)[0], field('Project', project)[0],
      field('From', from)[0], field('To', to)[0],
      h('div', { class: 'field end' }, h('button', { type: 'submit' }, 'Filter')));
    const list = h('div');
    const more = h('button', { type: 'button', hidden: true }, 'Older events');
    section.append(form, list, h('div', {}, more));

    let rows = [];
    let after;
    const actor = (ev) => {
      if (!ev.actor) return 'CLI';
      const id = ev.actor.api_key && ev.actor.api_key.id;
      return id ? `${keyNames.get(id) || 'key'} (${id})` : ev.actor.type;
    };
    async function fetchPage(reset) {
      if (reset) {
        rows = [];
        after = undefined;
      }
      const q = query({
        limit: 50,
        after,
        'event_types[]': type.value,
        'project_ids[]': project.value,
        'effective_at[gte]': seconds(from),
        'effective_at[lte]': seconds(to),
      });
      try {
        const page = await api('GET', `/organization/audit_logs${q}`);
        if (!live()) return;
        msg.clear();
        rows.push(...page.data);
        after = page.last_id;
        more.hidden = !page.has_more;
        list.replaceChildren(rows.length
          ? table('Audit events, newest first', ['When', 'Event', 'Actor', 'Project', 'About'], rows.map((ev) => h('tr', {},
            h('td', { class: 'nowrap' }, when(ev.effective_at)),
            h('td', {}, h('code', {}, ev.type)),
            h('td', {}, actor(ev)),
            h('td', {}, ev.project ? ev.project.name : '—'),
            h('td', {}, about(ev)))))
          : h('p', {}, 'No events match.'));
      } catch (e) {
        if (live()) msg.error(e); // the filters stay as they were
      }
    }
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      fetchPage(true);
    });
    more.addEventListener('click', () => fetchPage(false));
    await fetchPage(true);
  },
};
