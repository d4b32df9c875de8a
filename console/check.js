// Check a client certificate: the gateway's own decision on the committed state, without a
// TLS connection. Shows admitted or refused, the refusal code and reason, the admitting CA.

import { api, projects } from './api.js';
import { field, fileInto, h, notice } from './dom.js';

export default {
  id: 'check',
  title: 'Check a client certificate',
  async render(section, live) {
    const msg = notice();
    section.append(h('p', { class: 'muted' }, 'Would the gateway admit this client? Paste its certificate (leaf first, then any intermediates). Never paste its private key.'), msg.el);
    let projs = [];
    try {
      projs = await projects();
    } catch (e) {
      if (live()) msg.error(e);
    }
    if (!live()) return;
    const pem = h('textarea', { rows: '8', spellcheck: 'false', required: true, placeholder: '-----BEGIN CERTIFICATE-----' });
    const project = h('select', {}, h('option', { value: '' }, 'None (as a request without OpenAI-Project)'),
      projs.map((p) => h('option', { value: p.id }, `${p.name} (${p.id})`)));
    const verdict = h('div', { class: 'verdict', 'aria-live': 'polite' });
    const result = notice();
    const form = h('form', { class: 'card stack' },
      field('Client certificate (PEM)', pem)[0],
      fileInto(pem, 'Or read the PEM from a file'),
      field('Project', project)[0],
      h('div', {}, h('button', { type: 'submit' }, 'Check')),
      result.el, verdict);
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      result.clear();
      verdict.replaceChildren();
      const body = { certificate: pem.value };
      if (project.value) body.project_id = project.value;
      try {
        const r = await api('POST', '/organization/certificates/check', body);
        verdict.replaceChildren(
          h('p', { class: `outcome ${r.admitted ? 'admitted' : 'refused'}` }, r.admitted ? 'Admitted' : 'Refused'),
          h('dl', {},
            r.code ? [h('dt', {}, 'Code'), h('dd', {}, h('code', {}, r.code))] : null,
            h('dt', {}, 'Reason'), h('dd', {}, r.message),
            r.certificate ? [h('dt', {}, 'Admitting CA'), h('dd', {}, `${r.certificate.name || '(no name)'} (${r.certificate.id})`)] : null));
      } catch (e) {
        result.error(e);
      }
    });
    section.append(form);
  },
};
