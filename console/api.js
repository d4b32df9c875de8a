// The one way the console talks to certgate: `/v1` on this origin, the admin key from
// sessionStorage as a Bearer token. The key never goes into a URL, a cookie or a log line.

const KEY = 'certgate.adminKey';

export const session = {
  key: () => sessionStorage.getItem(KEY),
  signIn: (key) => sessionStorage.setItem(KEY, key),
  signOut: () => sessionStorage.removeItem(KEY),
};

/** An API refusal or a failure to get an answer; `message` is what to show. */
export class ApiError extends Error {
  constructor(message, status, code, param) {
    super(message);
    this.status = status;
    this.code = code || null;
    this.param = param || null;
  }
}

/** `{a: 1, 'x[]': ['p', 'q']}` → `?a=1&x[]=p&x[]=q` (empty values left out). */
export function query(params) {
  const parts = [];
  for (const [k, v] of Object.entries(params)) {
    for (const one of Array.isArray(v) ? v : [v]) {
      if (one === undefined || one === null || one === '') continue;
      parts.push(`${encodeURIComponent(k).replace('%5B%5D', '[]')}=${encodeURIComponent(one)}`);
    }
  }
  return parts.length ? `?${parts.join('&')}` : '';
}

/**
 * One request: resolves with the JSON body of a 2xx, rejects with an ApiError carrying the
 * message of OpenAI's error body (or why there was no answer). `key` overrides the session's.
 */
export async function api(method, path, body, key = session.key()) {
  const headers = { Accept: 'application/json' };
  if (key) headers.Authorization = `Bearer ${key}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let res;
  try {
    res = await fetch(`/v1${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store',
      credentials: 'omit',
    });
  } catch (e) {
    throw new ApiError(`Could not reach certgate (${e.message}). Nothing was changed by this page; try again.`, 0);
  }
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!res.ok) {
    const e = data && data.error;
    const msg = e && e.message ? e.message : `certgate answered HTTP ${res.status} ${res.statusText}`.trim();
    // A key revoked or expired while signed in: say what to do, keep the page as it is.
    const hint = res.status === 401 && key === session.key() ? ' Sign out, then sign in with a valid admin key.' : '';
    throw new ApiError(msg + hint, res.status, e && e.code, e && e.param);
  }
  if (data === null) throw new ApiError(`certgate answered HTTP ${res.status} without a JSON body`, res.status);
  return data;
}

/** Every item of a list endpoint, following `has_more`/`last_id` (bounded to 50 pages). */
export async function listAll(path, params = {}) {
  const out = [];
  let after;
  for (let i = 0; i < 50; i += 1) {
    const page = await api('GET', path + query({ ...params, limit: 100, after }));
    out.push(...page.data);
    if (!page.has_more || !page.last_id) break;
    after = page.last_id;
  }
  return out;
}

/** The organization's certificates with details and activations. */
export const certificates = () => listAll('/organization/certificates', { 'include[]': 'details' });
/** The organization's unarchived projects. */
export const projects = () => listAll('/organization/projects');

/**
 * Both lists, for the views that show certificates by project: `null` once the view is gone
 * (`live()` false) or after showing why they could not be read in `msg`.
 */
export async function certificatesAndProjects(msg, live) {
  let both;
  try {
    both = await Promise.all([certificates(), projects()]);
  } catch (e) {
    if (live()) msg.error(e);
    return null;
  }
  return live() ? both : null;
}
