// Revocations: the organization's deny-list (client certificates refused under every CA) and
// each CA's CRL: its state, an upload, a removal.

import { api, certificates, listAll } from './api.js';
import { certName, confirmButton, field, fileInto, h, notice, table, when } from './dom.js';

export default {
  id: 'revocations',
  title: 'Revocations',
  async render(section, live) {
    const msg = notice();
    const deny = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
    const crls = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
    const crlForm = uploadCrlForm(msg, () => load());
    section.append(msg.el,
      h('h3', {}, 'Deny-list'),
      h('p', { class: 'muted' }, 'A certificate on this list is refused under every CA (403 client_certificate_revoked), whichever CA signed it.'),
      deny, revokeForm(msg, () => load()),
      h('h3', {}, 'Certificate revocation lists, per CA'),
      crls, crlForm.form);

    async function load() {
      let entries;
      let certs;
      try {
        [entries, certs] = await Promise.all([listAll('/organization/revoked_certificates'), certificates()]);
      } catch (e) {
        if (live()) msg.error(e);
        return;
      }
      if (!live()) return;
      deny.replaceChildren(entries.length
        ? table('Revoked client certificates', ['SHA-256 fingerprint', 'Reason', 'Revoked at', 'Actions'], entries.map((r) => h('tr', {},
          h('td', {}, h('code', { class: 'fp' }, r.sha256_fingerprint)),
          h('td', {}, r.reason || '—'),
          h('td', {}, when(r.created_at)),
          h('td', {}, confirmButton('Remove', 'Confirm remove', async () => {
            try {
              await api('DELETE', `/organization/revoked_certificates/${r.id}`);
              msg.ok(`Removed ${r.sha256_fingerprint.slice(0, 16)}… from the deny-list.`);
              await load();
            } catch (e) {
              msg.error(e);
            }
          }, { class: 'small', 'aria-label': `Remove ${r.sha256_fingerprint} from the deny-list` })))))
        : h('p', {}, 'Nothing is revoked.'));
      crls.replaceChildren(certs.length
        ? table('CRL state per CA', ['CA', 'CRL', 'This update', 'Next update', 'Revoked serials', 'Actions'], certs.map((c) => {
          const crl = c.certificate_details.crl;
          return h('tr', {},
            h('th', { scope: 'row' }, certName(c), h('small', { class: 'block muted' }, c.id)),
            h('td', {}, crl ? h('span', { class: `badge ${crl.stale ? 'expired' : 'valid'}` }, crl.stale ? 'Stale (still enforced)' : 'Current') : 'None'),
            h('td', {}, crl ? when(crl.this_update) : '—'),
            h('td', {}, crl ? (crl.next_update ? when(crl.next_update) : 'none given') : '—'),
            h('td', {}, crl ? String(crl.revoked_count) : '—'),
            h('td', {}, crl ? confirmButton('Remove CRL', 'Confirm remove', async () => {
              try {
                await api('DELETE', `/organization/certificates/${c.id}/crl`);
                msg.ok(`Removed the CRL of ${certName(c)}.`);
                await load();
              } catch (e) {
                msg.error(e);
              }
            }, { class: 'small', 'aria-label': `Remove the CRL of ${certName(c)}` }) : ''));
        }))
        : h('p', {}, 'No CAs uploaded.'));
      crlForm.setCas(certs);
    }
    await load();
  },
};

function revokeForm(pageMsg, reload) {
  const msg = notice();
  const pem = h('textarea', { rows: '6', spellcheck: 'false', placeholder: '-----BEGIN CERTIFICATE-----' });
  const fp = h('input', { type: 'text', spellcheck: 'false', placeholder: '64 hex digits, colons allowed' });
  const reason = h('input', { type: 'text', maxlength: '256' });
  const form = h('form', { class: 'card stack' },
    h('h4', {}, 'Revoke a client certificate'),
    field('Client certificate to revoke (PEM)', pem, 'Or give its fingerprint below instead: one of the two.')[0],
    fileInto(pem, 'Or read the PEM from a file'),
    field('SHA-256 fingerprint', fp)[0],
    field('Reason', reason, 'Optional, for the audit log.')[0],
    h('div', {}, h('button', { type: 'submit' }, 'Revoke')),
    msg.el);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const body = {};
    if (pem.value.trim()) body.certificate = pem.value;
    if (fp.value.trim()) body.sha256_fingerprint = fp.value.trim();
    if (reason.value.trim()) body.reason = reason.value;
    try {
      const r = await api('POST', '/organization/revoked_certificates', body);
      pem.value = '';
      fp.value = '';
      reason.value = '';
      msg.ok(`Revoked ${r.sha256_fingerprint} (${r.id}).`);
      pageMsg.clear();
      await reload();
    } catch (e) {
      msg.error(e);
    }
  });
  return form;
}

function uploadCrlForm(pageMsg, reload) {
  const msg = notice();
  const ca = h('select', { required: true });
  const crl = h('textarea', { rows: '6', spellcheck: 'false', required: true, placeholder: '-----BEGIN X509 CRL-----' });
  const form = h('form', { class: 'card stack' },
    h('h4', {}, 'Upload a CRL'),
    field('CA', ca)[0],
    field('CRL (PEM or base64 DER)', crl, 'Signed by that CA; an older one than the stored CRL is refused.')[0],
    fileInto(crl, 'Or read the CRL from a file'),
    h('div', {}, h('button', { type: 'submit' }, 'Upload CRL')),
    msg.el);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    try {
      const r = await api('PUT', `/organization/certificates/${ca.value}/crl`, { crl: crl.value });
      crl.value = '';
      msg.ok(`Stored: ${r.revoked_count} revoked serials, this update ${when(r.this_update)}.`);
      pageMsg.clear();
      await reload();
    } catch (e) {
      msg.error(e);
    }
  });
  // A reload after another action keeps what is typed here: only the choices are renewed.
  const setCas = (certs) => {
    const chosen = ca.value;
    ca.replaceChildren(h('option', { value: '' }, 'Choose…'), ...
      certs.map((c) => h('option', { value: c.id, selected: c.id === chosen }, `${certName(c)} (${c.id})`)));
  };
  return { form, setCas };
}
