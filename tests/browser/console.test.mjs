// The web console in headless Chromium, as a person uses it: sign in, upload (paste and file),
// activate for the organization and a project, check a client certificate, revoke it, rotate,
// read the audit log, make and revoke an admin key, sign out; then every view at 375 px wide.
// Controls are found by the accessible names docs/decisions.md D43 promises. Any error in the
// page's console, any uncaught exception and any failed request outside the steps that expect one
// fail the run.
//
// Run by scripts/browser-test, which starts certgate and sets:
//   CERTGATE_URL, CERTGATE_ADMIN_KEY_FILE, CERTGATE_WORK (ca.pem, ca2.pem, client.pem,
//   client2.pem, ca.crl: the first CA's CRL revoking client2),
//   CHROMIUM, and optionally CERTGATE_SCREENSHOTS (a directory for one PNG per view).

import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const base = process.env.CERTGATE_URL;
const work = process.env.CERTGATE_WORK;
const shots = process.env.CERTGATE_SCREENSHOTS || '';
const key = readFileSync(process.env.CERTGATE_ADMIN_KEY_FILE, 'utf8').trim();
const pem = (name) => readFileSync(join(work, name), 'utf8');
const fingerprint = (p) => new X509Certificate(p).fingerprint256.replaceAll(':', '').toLowerCase();

const VIEWS = [
  ['certificates', 'Certificates'],
  ['projects', 'Projects'],
  ['rotate', 'Rotate'],
  ['check', 'Check a client certificate'],
  ['revocations', 'Revocations'],
  ['audit', 'Audit log'],
  ['keys', 'Admin keys'],
];

const problems = [];
let expectHttpErrors = false;

/** Records what would be a failure: console errors, page exceptions, failed requests. */
function watch(page) {
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    if (expectHttpErrors && /the server responded with a status of 4\d\d/.test(m.text())) return;
    problems.push(`console error: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`uncaught: ${e.message}`));
  page.on('requestfailed', (r) => problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));
  page.on('request', (r) => {
    if (r.url().includes(key)) problems.push(`the admin key is in a URL: ${r.method()}`);
  });
  page.on('response', (r) => {
    if (r.status() >= 400 && !expectHttpErrors) problems.push(`HTTP ${r.status()} for ${r.request().method()} ${r.url()}`);
  });
}

/** Polls `fn` until it returns something truthy. */
async function until(what, fn, timeout = 10000) {
  const end = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what} (last: ${last})`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The admin API from the test itself, to confirm what the page did. */
async function apiGet(path) {
  const res = await fetch(`${base}/v1${path}`, { headers: { Authorization: `Bearer ${key}` } });
  if (!res.ok) throw new Error(`GET ${path}: ${res.status} ${await res.text()}`);
  return res.json();
}

let stepNo = 0;
async function step(name, fn) {
  stepNo += 1;
  const t = Date.now();
  try {
    await fn();
  } catch (e) {
    console.error(`not ok ${stepNo} - ${name}\n  ${e.stack || e}`);
    throw e;
  }
  console.log(`ok ${stepNo} - ${name} (${Date.now() - t} ms)`);
}

const region = (page, name) => page.getByRole('region', { name, exact: true });

async function open(page, id, title) {
  await page.getByRole('link', { name: title, exact: true }).click();
  const r = region(page, title);
  await r.waitFor();
  await until(`${title} loaded`, async () => (await r.getByText('Loading…').count()) === 0);
  return r;
}

async function signIn(page) {
  await page.goto(`${base}/console`);
  await page.getByLabel('Admin key', { exact: true }).fill(key);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await region(page, 'Certificates').waitFor();
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  // CI runs as root, where Chromium's sandbox cannot start.
  args: ['--no-sandbox'],
});
let failed = false;
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  watch(page);
  const caPem = pem('ca.pem');
  const clientPem = pem('client.pem');
  let caId;
  let ca2Id;
  let projectId;

  await step('the page loads with its favicon and asks for the key', async () => {
    await page.goto(`${base}/console`);
    await page.getByLabel('Admin key', { exact: true }).waitFor();
    const icon = await page.evaluate(() => document.querySelector('link[rel=icon]').href);
    const res = await page.request.get(icon);
    if (res.status() !== 200) throw new Error(`favicon: ${res.status()}`);
  });

  await step('a wrong key is refused with the API message, and stays in the field', async () => {
    expectHttpErrors = true;
    const field = page.getByLabel('Admin key', { exact: true });
    await field.fill('sk-admin-not-a-key');
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
    const alert = page.locator('#sign-in-error');
    await until('the refusal', async () => /key/i.test(await alert.textContent()));
    if ((await field.inputValue()) !== 'sk-admin-not-a-key') throw new Error('the typed key was lost');
    expectHttpErrors = false;
  });

  await step('sign in: the key goes to sessionStorage only', async () => {
    await page.getByLabel('Admin key', { exact: true }).fill(key);
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
    await region(page, 'Certificates').waitFor();
    const stored = await page.evaluate(() => ({
      session: sessionStorage.getItem('certgate.adminKey'),
      local: localStorage.length,
      cookie: document.cookie,
    }));
    if (stored.session !== key || stored.local !== 0 || stored.cookie !== '') throw new Error(`storage: ${JSON.stringify({ ...stored, session: !!stored.session })}`);
    if (page.url().includes(key)) throw new Error('key in the URL');
  });

  await step('an upload the API refuses shows its message and keeps the input', async () => {
    const r = region(page, 'Certificates');
    expectHttpErrors = true;
    await r.getByLabel('Certificate (PEM)', { exact: true }).fill('not a certificate');
    await r.getByLabel('Name', { exact: true }).fill('Broken');
    await r.getByRole('button', { name: 'Upload', exact: true }).click();
    await until('the error', async () => (await r.getByRole('alert').count()) === 1);
    const msg = await r.getByRole('alert').textContent();
    if (!/certificate|PEM/i.test(msg)) throw new Error(`message: ${msg}`);
    if ((await r.getByLabel('Certificate (PEM)', { exact: true }).inputValue()) !== 'not a certificate') throw new Error('pasted text lost');
    if ((await r.getByLabel('Name', { exact: true }).inputValue()) !== 'Broken') throw new Error('name lost');
    expectHttpErrors = false;
  });

  await step('upload by paste, then by file: one row each with name, id, status, expiry, fingerprint', async () => {
    const r = region(page, 'Certificates');
    await r.getByLabel('Certificate (PEM)', { exact: true }).fill(caPem);
    await r.getByLabel('Name', { exact: true }).fill('Payments clients CA');
    await r.getByRole('button', { name: 'Upload', exact: true }).click();
    await r.getByRole('row').filter({ hasText: 'Payments clients CA' }).waitFor();
    await r.getByLabel('Certificate (PEM)', { exact: true }).fill('');
    await r.getByLabel('Or read the PEM from a file').setInputFiles(join(work, 'ca2.pem'));
    await until('the file read', async () => (await r.getByLabel('Certificate (PEM)', { exact: true }).inputValue()).includes('BEGIN CERTIFICATE'));
    await r.getByLabel('Name', { exact: true }).fill('Payments clients CA 2027');
    await r.getByRole('button', { name: 'Upload', exact: true }).click();
    await r.getByRole('row').filter({ hasText: 'Payments clients CA 2027' }).waitFor();
    const certs = (await apiGet('/organization/certificates')).data;
    caId = certs.find((c) => c.name === 'Payments clients CA').id;
    ca2Id = certs.find((c) => c.name === 'Payments clients CA 2027').id;
    const row = r.locator(`tr[data-id="${caId}"]`);
    const text = await row.textContent();
    const expires = new Date(Date.parse(new X509Certificate(caPem).validTo)).toISOString().slice(0, 10);
    for (const want of [caId, 'Valid', expires, fingerprint(caPem)]) {
      if (!text.includes(want)) throw new Error(`row lacks ${want}: ${text}`);
    }
    if ((await r.locator('tbody tr').count()) !== 2) throw new Error('one row per certificate');
  });

  await step('activate for the organization; delete is then disabled, with the reason', async () => {
    const r = region(page, 'Certificates');
    const row = () => r.locator(`tr[data-id="${caId}"]`);
    await row().getByRole('checkbox', { name: 'Active for organization', exact: true }).click();
    await until('the toggle', async () => row().getByRole('checkbox', { name: 'Active for organization', exact: true }).isChecked());
    await until('delete disabled', async () => row().getByRole('button', { name: 'Delete' }).isDisabled());
    if (!(await row().textContent()).includes('In use')) throw new Error('no reason shown');
    const c = await apiGet(`/organization/certificates/${caId}?include[]=details`);
    if (!c.activations.organization) throw new Error('not active for the organization');
  });

  await step('rename a certificate', async () => {
    const r = region(page, 'Certificates');
    const row = () => r.locator(`tr[data-id="${ca2Id}"]`);
    await row().getByRole('button', { name: 'Rename' }).click();
    await row().getByLabel('New name').fill('Payments CA 2027');
    await row().getByRole('button', { name: 'Save' }).click();
    await until('the new name', async () => (await row().textContent()).includes('Payments CA 2027'));
  });

  await step('Projects: create one and activate the CA for it in the matrix', async () => {
    const r = await open(page, 'projects', 'Projects');
    await r.getByLabel('Project name', { exact: true }).fill('Payments');
    await r.getByRole('button', { name: 'Create project', exact: true }).click();
    const box = () => r.locator(`tr[data-id="${caId}"]`).getByRole('checkbox', { name: 'Active for project Payments', exact: true });
    await box().waitFor();
    await box().click();
    // The box ticks at once; the answer (and the re-rendered matrix) comes after.
    await r.getByRole('status').filter({ hasText: 'now active for project Payments' }).waitFor();
    if (!(await box().isChecked())) throw new Error('the matrix does not show the activation');
    projectId = (await apiGet('/organization/projects')).data.find((p) => p.name === 'Payments').id;
    const c = await apiGet(`/organization/certificates/${caId}?include[]=details`);
    if (!c.activations.projects.includes(projectId)) throw new Error(`not active for ${projectId}`);
  });

  const checkClient = async (want, file = 'client.pem') => {
    const r = await open(page, 'check', 'Check a client certificate');
    await r.getByLabel('Client certificate (PEM)', { exact: true }).fill(pem(file));
    await r.getByLabel('Project', { exact: true }).selectOption(projectId);
    await r.getByRole('button', { name: 'Check', exact: true }).click();
    await until(want, async () => (await r.locator('.outcome').count()) === 1);
    return r.locator('.verdict').textContent();
  };

  await step('check a client certificate: admitted, by the CA', async () => {
    const v = await checkClient('Admitted');
    if (!v.includes('Admitted') || !v.includes('Payments clients CA') || !v.includes(caId)) throw new Error(`verdict: ${v}`);
  });

  await step('revoke the client certificate: on the deny-list, and then refused', async () => {
    const r = await open(page, 'revocations', 'Revocations');
    await r.getByLabel('Client certificate to revoke (PEM)', { exact: true }).fill(clientPem);
    await r.getByLabel('Reason', { exact: true }).fill('laptop lost');
    await r.getByRole('button', { name: 'Revoke', exact: true }).click();
    await r.getByRole('row').filter({ hasText: fingerprint(clientPem) }).waitFor();
    const v = await checkClient('Refused');
    if (!v.includes('Refused') || !v.includes('client_certificate_revoked')) throw new Error(`verdict: ${v}`);
  });

  await step('a CA\'s CRL: uploaded from a file, its state shown, its client refused', async () => {
    const r = await open(page, 'revocations', 'Revocations');
    await r.getByLabel('CA', { exact: true }).selectOption(caId);
    await r.getByLabel('Or read the CRL from a file').setInputFiles(join(work, 'ca.crl'));
    await until('the file read', async () => (await r.getByLabel('CRL (PEM or base64 DER)').inputValue()).includes('BEGIN X509 CRL'));
    await r.getByRole('button', { name: 'Upload CRL', exact: true }).click();
    const row = r.getByRole('table', { name: 'CRL state per CA' }).getByRole('row').filter({ hasText: caId });
    await until('the CRL state', async () => /Current/.test(await row.textContent()));
    const cells = await row.getByRole('cell').allTextContents();
    if (cells[3] !== '1') throw new Error(`revoked serials: ${cells}`);
    const v = await checkClient('Refused', 'client2.pem');
    if (!v.includes('Refused') || !v.includes('client_certificate_revoked')) throw new Error(`verdict: ${v}`);
  });

  await step('rotate to the new CA', async () => {
    const r = await open(page, 'rotate', 'Rotate');
    await r.getByLabel('From (the CA being replaced)').selectOption(caId);
    await r.getByLabel('To (the new CA)').selectOption(ca2Id);
    await r.getByRole('button', { name: 'Rotate', exact: true }).click();
    await until('the result', async () => (await r.getByRole('status').filter({ hasText: ca2Id }).count()) === 1);
    const c = await apiGet(`/organization/certificates/${ca2Id}?include[]=details`);
    if (!c.activations.organization || !c.activations.projects.includes(projectId)) throw new Error('rotation incomplete');
  });

  await step('audit log: the entries, and the filters', async () => {
    const r = await open(page, 'audit', 'Audit log');
    await r.locator('table').waitFor();
    const text = await r.locator('table').textContent();
    for (const t of ['certificate.created', 'certificate.updated', 'certificates.activated', 'project.created', 'certificate.revoked']) {
      if (!text.includes(t)) throw new Error(`no ${t} in the audit log`);
    }
    await r.getByLabel('Event type').selectOption('certificate.revoked');
    await r.getByRole('button', { name: 'Filter', exact: true }).click();
    await until('one revocation', async () => (await r.locator('tbody tr').count()) === 1
      && (await r.locator('tbody').textContent()).includes('laptop lost'));
    await r.getByLabel('Event type').selectOption('');
    await r.getByLabel('Project').selectOption(projectId);
    await r.getByRole('button', { name: 'Filter', exact: true }).click();
    await until('project events only', async () => {
      const rows = await r.locator('tbody tr').allTextContents();
      return rows.length >= 2 && rows.every((t) => t.includes('Payments'));
    });
    // Time: from tomorrow on, nothing has happened yet.
    const tomorrow = new Date(Date.now() + 86400000);
    const local = new Date(tomorrow.getTime() - tomorrow.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
    await r.getByLabel('From', { exact: true }).fill(local);
    await r.getByRole('button', { name: 'Filter', exact: true }).click();
    await r.getByText('No events match.').waitFor();
  });

  await step('admin keys: a new key is shown once, then revoked', async () => {
    const r = await open(page, 'keys', 'Admin keys');
    await r.getByLabel('Key name', { exact: true }).fill('ci robot');
    await r.getByRole('button', { name: 'Create key', exact: true }).click();
    const value = r.getByLabel('New admin key value');
    await value.waitFor();
    if (!(await value.inputValue()).startsWith('sk-admin-')) throw new Error('no key value shown');
    await r.getByRole('row').filter({ hasText: 'ci robot' }).waitFor();
    await r.getByRole('button', { name: 'Done' }).click();
    if ((await value.count()) !== 0) throw new Error('the value is still on the page');
    const revoke = r.getByRole('button', { name: 'Revoke ci robot' });
    await revoke.click();
    await revoke.click();
    await until('the key gone', async () => (await r.getByRole('row').filter({ hasText: 'ci robot' }).count()) === 0);
  });

  if (shots) {
    await step(`screenshots of every view in ${shots}`, async () => {
      for (const [id, title] of VIEWS) {
        const r = await open(page, id, title);
        // A filled-in form says more than an empty one.
        if (id === 'check') {
          await r.getByLabel('Client certificate (PEM)', { exact: true }).fill(pem('client2.pem'));
          await r.getByLabel('Project', { exact: true }).selectOption(projectId);
          await r.getByRole('button', { name: 'Check', exact: true }).click();
          await r.locator('.outcome').waitFor();
        }
        if (id === 'rotate') {
          await r.getByLabel('From (the CA being replaced)').selectOption(caId);
          await r.getByLabel('To (the new CA)').selectOption(ca2Id);
        }
        await page.screenshot({ path: join(shots, `${id}.png`), fullPage: true });
      }
    });
  }

  await step('at 375 px wide every view fits: no horizontal scrolling of the page', async () => {
    const narrow = await browser.newContext({ viewport: { width: 375, height: 812 }, isMobile: true, hasTouch: true });
    const p = await narrow.newPage();
    watch(p);
    await signIn(p);
    for (const [id, title] of VIEWS) {
      await open(p, id, title);
      const { scroll, width } = await p.evaluate(() => ({
        scroll: document.documentElement.scrollWidth,
        width: document.documentElement.clientWidth,
      }));
      if (scroll > width) throw new Error(`${title}: page is ${scroll} px wide in a ${width} px window`);
      if (shots && id === 'certificates') await p.screenshot({ path: join(shots, 'certificates-375.png'), fullPage: true });
    }
    await narrow.close();
  });

  await step('sign out: the key is gone from the tab', async () => {
    await page.getByRole('button', { name: 'Sign out', exact: true }).click();
    await page.getByLabel('Admin key', { exact: true }).waitFor();
    const left = await page.evaluate(() => sessionStorage.length);
    if (left !== 0) throw new Error('sessionStorage not empty');
    if ((await page.getByLabel('Admin key', { exact: true }).inputValue()) !== '') throw new Error('key still in the field');
  });

  await step('no console errors, exceptions or unexpected failed requests', async () => {
    if (problems.length) throw new Error(problems.join('\n  '));
  });
} catch {
  failed = true;
  // What the page said may explain the failed step.
  for (const p of problems) console.error(`  ${p}`);
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
