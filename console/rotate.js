// Rotate: the new CA joins the old one wherever the old one is active, in one transaction,
// optionally retiring the old one there.

import { api, certificatesAndProjects } from './api.js';
import { certName, field, h, notice } from './dom.js';
import { whereActive } from './certificates.js';

export default {
  id: 'rotate',
  title: 'Rotate',
  async render(section, live) {
    const msg = notice();
    section.append(h('p', { class: 'muted' }, 'Replace a CA without locking anyone out: the new one becomes active everywhere the old one is (organization and each project), in one step. Retire the old one now, or later once every client has a new certificate.'), msg.el);
    const both = await certificatesAndProjects(msg, live);
    if (!both) return;
    const [certs, projs] = both;
    const names = new Map(projs.map((p) => [p.id, p.name]));
    const option = (c) => h('option', { value: c.id }, `${certName(c)} (${c.id})`);
    const from = h('select', { required: true }, h('option', { value: '' }, 'Choose…'), certs.map(option));
    const to = h('select', { required: true }, h('option', { value: '' }, 'Choose…'), certs.map(option));
    const retire = h('input', { type: 'checkbox', id: 'retire-from' });
    const fromWhere = h('small', { class: 'hint', 'aria-live': 'polite' });
    from.addEventListener('change', () => {
      const c = certs.find((x) => x.id === from.value);
      fromWhere.textContent = c ? `Active for: ${whereActive(c, names) || 'nowhere (rotation needs it active somewhere)'}` : '';
    });
    const result = notice();
    const form = h('form', { class: 'card stack' },
      field('From (the CA being replaced)', from)[0], fromWhere,
      field('To (the new CA)', to)[0],
      h('div', { class: 'field' }, h('label', { class: 'inline', for: 'retire-from' }, retire, ' Retire the old CA where it is active')),
      h('div', {}, h('button', { type: 'submit' }, 'Rotate')),
      result.el);
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      try {
        const r = await api('POST', '/organization/certificates/rotate', { from: from.value, to: to.value, retire_from: retire.checked });
        const scopes = [r.organization ? 'the organization' : null, ...r.projects.map((p) => names.get(p) || p)].filter(Boolean);
        result.ok(`${r.to} is now active for ${scopes.join(', ') || 'nothing new'}${r.retired ? `; ${r.from} was retired there` : ''}.`);
      } catch (e) {
        result.error(e); // the choices stay
      }
    });
    section.append(form);
  },
};
