// Certificates: every CA of the organization (name, id, status with expiry, fingerprint,
// where it is active), the organization toggle, rename, the revocation sources (a CRL URL
// certgate keeps fetched, the OCSP mode: decisions.md D58), delete (disabled while in use, with
// the reason), and upload by paste or file.

import { api, certificatesAndProjects } from './api.js';
import { certName, confirmButton, daysFromNow, field, fileInto, h, notice, table, when } from './dom.js';

const STATUS = {
  valid: 'Valid',
  expiring_soon: 'Expiring soon',
  expired: 'Expired',
  not_yet_valid: 'Not yet valid',
};

export function statusCell(c) {
  const d = c.certificate_details;
  const s = d.status || 'valid';
  const days = daysFromNow(d.expires_at);
  let rel = '';
  if (s === 'expired') rel = `${-days} days ago`;
  else if (s === 'not_yet_valid') rel = `valid from ${when(d.valid_at)}`;
  else rel = `in ${days} days`;
  return [h('span', { class: `badge ${s}` }, STATUS[s] || s), h('small', { class: 'block' }, rel)];
}

/** "the organization, Default project, Payments" or null when active nowhere. */
export function whereActive(c, projectNames) {
  const a = c.activations || { organization: !!c.active, projects: [] };
  const parts = [];
  if (a.organization) parts.push('the organization');
  for (const p of a.projects) parts.push(projectNames.get(p) || p);
  return parts.length ? parts.join(', ') : null;
}

export default {
  id: 'certificates',
  title: 'Certificates',
  async render(section, live) {
    const msg = notice();
    const body = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
    section.append(msg.el, body, uploadForm(msg, () => load()));

    async function load() {
      const both = await certificatesAndProjects(msg, live);
      if (!both) return;
      const [certs, projs] = both;
      const names = new Map(projs.map((p) => [p.id, p.name]));
      body.replaceChildren(
        h('p', { class: 'muted' }, `${certs.length} of 50 certificates. A new certificate is active nowhere until you activate it here or in Projects.`),
        certs.length ? table('CA certificates of this organization',
          ['Name', 'ID', 'Status', 'Expires', 'SHA-256 fingerprint', 'Active for', 'Actions'],
          certs.map((c) => row(c, names, msg, load)))
          : h('p', {}, 'No certificates yet: upload one below.'));
    }
    await load();
  },
};

function row(c, names, msg, reload) {
  const d = c.certificate_details;
  const where = whereActive(c, names);
  const projectsActive = (c.activations ? c.activations.projects : [])
    .map((p) => names.get(p) || p);
  const toggle = h('input', { type: 'checkbox', 'aria-label': 'Active for organization', checked: !!(c.activations ? c.activations.organization : c.active) });
  toggle.addEventListener('change', async () => {
    const on = toggle.checked;
    toggle.disabled = true;
    try {
      await api('POST', `/organization/certificates/${on ? 'activate' : 'deactivate'}`, { certificate_ids: [c.id] });
      msg.ok(`${certName(c)} is now ${on ? 'active' : 'inactive'} for the organization.`);
      await reload();
    } catch (e) {
      toggle.checked = !on;
      msg.error(e);
    } finally {
      toggle.disabled = false;
    }
  });

  const nameCell = h('th', { scope: 'row' }, c.name || h('span', { class: 'muted' }, '(no name)'),
    sourcesLine(c));
  const rename = h('button', { type: 'button', class: 'small' }, 'Rename');
  rename.addEventListener('click', () => renameForm(c, nameCell, msg, reload));
  const revocation = h('button', { type: 'button', class: 'small' }, 'Revocation');
  revocation.addEventListener('click', () => sourcesForm(c, nameCell, msg, reload));

  const reasonId = `in-use-${c.id}`;
  const del = where
    ? [h('button', { type: 'button', class: 'small', disabled: true, 'aria-describedby': reasonId }, 'Delete'),
      h('small', { id: reasonId, class: 'block muted' }, `In use: active for ${where}. Deactivate it everywhere first.`)]
    : confirmButton('Delete', 'Confirm delete', async () => {
      try {
        await api('DELETE', `/organization/certificates/${c.id}`);
        msg.ok(`Deleted ${certName(c)}.`);
        await reload();
      } catch (e) {
        msg.error(e);
      }
    }, { class: 'small' });

  return h('tr', { 'data-id': c.id },
    nameCell,
    h('td', {}, h('code', {}, c.id)),
    h('td', {}, statusCell(c)),
    h('td', {}, when(d.expires_at)),
    h('td', {}, h('code', { class: 'fp' }, d.sha256_fingerprint || '')),
    h('td', {},
      h('label', { class: 'inline' }, toggle, ' organization'),
      projectsActive.length ? h('small', { class: 'block' }, `Projects: ${projectsActive.join(', ')}`) : null),
    h('td', { class: 'actions' }, rename, revocation, del));
}

const OCSP = { off: 'Off', soft_fail: 'Soft fail (no answer admits)', hard_fail: 'Hard fail (no answer refuses)' };

/** "CRL from URL · OCSP: hard_fail", or nothing when neither is set. */
function sourcesLine(c) {
  const parts = [];
  if (c.crl_url) parts.push(`CRL from ${c.crl_url}`);
  if (c.ocsp) parts.push(`OCSP: ${c.ocsp}`);
  return parts.length ? h('small', { class: 'block muted sources' }, parts.join(' · ')) : null;
}

function ocspSelect(value) {
  return h('select', {}, ...Object.entries(OCSP).map(([v, label]) => h('option', { value: v, selected: v === (value || 'off') }, label)));
}

function sourcesForm(c, cell, msg, reload) {
  const url = h('input', { type: 'url', value: c.crl_url || '', maxlength: '2048', placeholder: 'The CA\'s CRL distribution point' });
  const ocsp = ocspSelect(c.ocsp);
  const cancel = h('button', { type: 'button', class: 'small quiet' }, 'Cancel');
  const form = h('form', { class: 'sources' },
    field('CRL URL', url, 'certgate fetches it and enforces it as if uploaded. Empty: stop fetching.')[0],
    field('OCSP', ocsp)[0],
    h('button', { type: 'submit', class: 'small' }, 'Save'), cancel);
  cancel.addEventListener('click', () => reload());
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    try {
      await api('POST', `/organization/certificates/${c.id}`, { crl_url: url.value.trim() || null, ocsp: ocsp.value });
      msg.ok(`Revocation sources of ${certName(c)} saved.`);
      await reload();
    } catch (e) {
      msg.error(e); // what was typed stays in the fields
    }
  });
  cell.replaceChildren(form);
  url.focus();
}

function renameForm(c, cell, msg, reload) {
  const input = h('input', { type: 'text', value: c.name || '', maxlength: '256' });
  const [wrap] = field('New name', input);
  const cancel = h('button', { type: 'button', class: 'small quiet' }, 'Cancel');
  const form = h('form', { class: 'rename' }, wrap, h('button', { type: 'submit', class: 'small' }, 'Save'), cancel);
  cancel.addEventListener('click', () => cell.replaceChildren(c.name || h('span', { class: 'muted' }, '(no name)')));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    try {
      await api('POST', `/organization/certificates/${c.id}`, { name: input.value });
      msg.ok(`Renamed to ${input.value}.`);
      await reload();
    } catch (e) {
      msg.error(e); // the typed name stays in the field
    }
  });
  cell.replaceChildren(form);
  input.focus();
}

function uploadForm(pageMsg, reload) {
  const msg = notice();
  const pem = h('textarea', { rows: '8', spellcheck: 'false', required: true, placeholder: '-----BEGIN CERTIFICATE-----' });
  const name = h('input', { type: 'text', maxlength: '256' });
  const crlUrl = h('input', { type: 'url', maxlength: '2048' });
  const ocsp = ocspSelect('off');
  const form = h('form', { class: 'card stack' },
    h('h3', {}, 'Upload a CA certificate'),
    field('Certificate (PEM)', pem, 'A CA certificate: CA:TRUE, keyCertSign and a Subject Key Identifier. Never a private key.')[0],
    fileInto(pem, 'Or read the PEM from a file'),
    field('Name', name, 'Optional.')[0],
    field('CRL URL', crlUrl, 'Optional: an http(s) URL of this CA\'s CRL; certgate keeps it fetched and enforced.')[0],
    field('OCSP', ocsp, 'Ask the client certificate\'s OCSP responder (from its AIA).')[0],
    h('div', {}, h('button', { type: 'submit' }, 'Upload')),
    msg.el);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const body = { certificate: pem.value };
    if (name.value.trim()) body.name = name.value;
    if (crlUrl.value.trim()) body.crl_url = crlUrl.value.trim();
    if (ocsp.value !== 'off') body.ocsp = ocsp.value;
    try {
      const c = await api('POST', '/organization/certificates', body);
      pem.value = '';
      name.value = '';
      crlUrl.value = '';
      ocsp.value = 'off';
      msg.ok(`Uploaded ${certName(c)} (${c.id}). It is active nowhere yet.`);
      pageMsg.clear();
      await reload();
    } catch (e) {
      msg.error(e); // what was pasted stays, to be fixed
    }
  });
  return form;
}
