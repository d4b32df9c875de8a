// A tiny DOM builder: elements are made node by node (never from HTML strings), so the page
// works under `require-trusted-types-for 'script'` and nothing from the API is parsed as markup.

/**
 * h('button', {type: 'button', onclick: f, class: 'x'}, 'text', child, ...)
 * Attributes: `class`, `text`, `on<event>` (listeners), and the properties `value`, `checked`,
 * `disabled`, `hidden`, `selected`; anything else is set as an attribute. Children may be
 * strings, nodes, arrays, or null/false (skipped).
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else if (['value', 'checked', 'disabled', 'hidden', 'selected'].includes(k)) el[k] = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : String(c));
  }
}

let seq = 0;
/** A unique id for label/aria wiring. */
export function uid(prefix) {
  seq += 1;
  return `${prefix}-${seq}`;
}

/** A labelled field: returns [wrapper, control]. */
export function field(label, control, hint) {
  const id = control.id || uid('f');
  control.id = id;
  let hintEl = null;
  if (hint) {
    hintEl = h('small', { id: `${id}-hint`, class: 'hint' }, hint);
    control.setAttribute('aria-describedby', hintEl.id);
  }
  return [h('div', { class: 'field' }, h('label', { for: id }, label), control, hintEl), control];
}

/** A message line: `role=alert` for errors, `role=status` for results. */
export function notice() {
  const el = h('div', { class: 'notice', role: 'status', 'aria-live': 'polite' });
  return {
    el,
    error(err) {
      el.className = 'notice error';
      el.setAttribute('role', 'alert');
      el.textContent = err && err.message ? err.message : String(err);
    },
    ok(text) {
      el.className = 'notice ok';
      el.setAttribute('role', 'status');
      el.textContent = text;
    },
    clear() {
      el.className = 'notice';
      el.textContent = '';
    },
  };
}

/** Unix seconds → `2026-11-27 09:14 UTC`. */
export function when(seconds) {
  if (seconds === null || seconds === undefined) return '—';
  return `${new Date(seconds * 1000).toISOString().slice(0, 16).replace('T', ' ')} UTC`;
}

/** Days from now to `seconds`, rounded toward zero. */
export function daysFromNow(seconds) {
  return Math.trunc((seconds * 1000 - Date.now()) / 86400000);
}

/**
 * A table in a box of its own. On a narrow screen (console.css) each row becomes a card, every
 * cell labelled by its column (`data-label`); the roles are set explicitly, so the table stays
 * a table to assistive technology whatever its CSS display. `matrix` tables keep their grid
 * and scroll sideways inside the box instead: their columns are the point.
 */
export function table(caption, headers, rows, { matrix = false } = {}) {
  const t = h('table', { class: matrix ? 'matrix' : 'cards', role: 'table' },
    caption ? h('caption', {}, caption) : null,
    h('thead', { role: 'rowgroup' }, h('tr', { role: 'row' }, headers.map((x) => h('th', { scope: 'col', role: 'columnheader' }, x)))),
    h('tbody', { role: 'rowgroup' }, rows));
  const labels = headers.map((x) => (x instanceof Node ? x.textContent : String(x)));
  for (const tr of t.tBodies[0].rows) {
    tr.setAttribute('role', 'row');
    [...tr.cells].forEach((cell, i) => {
      cell.setAttribute('role', cell.tagName === 'TH' ? 'rowheader' : 'cell');
      if (!matrix && labels[i]) cell.dataset.label = labels[i];
    });
  }
  return h('div', { class: 'scroll' }, t);
}

/** Reads a chosen file into a textarea (text files: PEM). */
export function fileInto(textarea, label) {
  const input = h('input', { type: 'file', accept: '.pem,.crt,.cer,.crl,.txt,text/plain' });
  input.addEventListener('change', async () => {
    const f = input.files && input.files[0];
    if (f) textarea.value = await f.text();
  });
  return field(label, input)[0];
}

/** A button that asks once more before `action` runs (a second click within 5 s). */
export function confirmButton(label, confirmLabel, action, attrs = {}) {
  let armed = null;
  const b = h('button', { type: 'button', ...attrs }, label);
  b.addEventListener('click', async () => {
    if (!armed) {
      b.textContent = confirmLabel;
      b.classList.add('danger');
      armed = setTimeout(() => {
        armed = null;
        b.textContent = label;
        b.classList.remove('danger');
      }, 5000);
      return;
    }
    clearTimeout(armed);
    armed = null;
    b.disabled = true;
    try {
      await action();
    } finally {
      b.disabled = false;
      b.textContent = label;
      b.classList.remove('danger');
    }
  });
  return b;
}

/** A certificate's display name. */
export function certName(c) {
  return c.name || c.id;
}
