// Projects: the activation matrix, one row per certificate, one column for the organization
// and one per unarchived project, each cell a toggle; and a form to create a project.

import { api, certificatesAndProjects } from './api.js';
import { certName, field, h, notice, table } from './dom.js';

export default {
  id: 'projects',
  title: 'Projects',
  async render(section, live) {
    const msg = notice();
    const body = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
    section.append(
      h('p', { class: 'muted' }, 'Where each CA is trusted. The organization column applies to every request; a project column adds the CA for that project only.'),
      msg.el, body, createForm(msg, () => load()));

    async function load() {
      const both = await certificatesAndProjects(msg, live);
      if (!both) return;
      const [certs, projs] = both;
      if (!certs.length) {
        body.replaceChildren(h('p', {}, 'No certificates yet: upload one in Certificates.'));
        return;
      }
      const headers = ['Certificate', 'Organization',
        ...projs.map((p) => h('span', {}, p.name, h('small', { class: 'block muted' }, p.id)))];
      body.replaceChildren(table('Activation matrix', headers, certs.map((c) => {
        const a = c.activations || { organization: false, projects: [] };
        const cells = [toggle(c, 'Active for organization', a.organization, null, msg, load)];
        for (const p of projs) {
          cells.push(toggle(c, `Active for project ${p.name}`, a.projects.includes(p.id), p, msg, load));
        }
        return h('tr', { 'data-id': c.id },
          h('th', { scope: 'row' }, certName(c), h('small', { class: 'block muted' }, c.id)),
          cells.map((t) => h('td', { class: 'center' }, t)));
      }), { matrix: true }));
    }
    await load();
  },
};

function toggle(c, label, on, project, msg, reload) {
  const box = h('input', { type: 'checkbox', 'aria-label': label, checked: on });
  box.addEventListener('change', async () => {
    const want = box.checked;
    const verb = want ? 'activate' : 'deactivate';
    const path = project
      ? `/organization/projects/${project.id}/certificates/${verb}`
      : `/organization/certificates/${verb}`;
    box.disabled = true;
    try {
      await api('POST', path, { certificate_ids: [c.id] });
      msg.ok(`${certName(c)} is now ${want ? 'active' : 'inactive'} for ${project ? `project ${project.name}` : 'the organization'}.`);
      await reload();
    } catch (e) {
      box.checked = !want;
      msg.error(e);
    } finally {
      box.disabled = false;
    }
  });
  return box;
}

function createForm(pageMsg, reload) {
  const msg = notice();
  const name = h('input', { type: 'text', required: true, maxlength: '256' });
  const form = h('form', { class: 'card stack' },
    h('h3', {}, 'Create a project'),
    field('Project name', name)[0],
    h('div', {}, h('button', { type: 'submit' }, 'Create project')),
    msg.el);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    try {
      const p = await api('POST', '/organization/projects', { name: name.value });
      name.value = '';
      msg.ok(`Created ${p.name} (${p.id}).`);
      pageMsg.clear();
      await reload();
    } catch (e) {
      msg.error(e);
    }
  });
  return form;
}
