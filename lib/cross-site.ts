/**
 * The cross-site write guard. A browser that holds the console's Basic credentials sends them with any
 * request to this server, whichever page makes it: without this check, a page on another site could post
 * a form or a fetch to /rollback or PUT /cells and change the world in an operator's name. Browsers mark
 * where a request comes from (`Sec-Fetch-Site`, `Origin`); curl, PlayFab and other servers send neither,
 * and are not affected.
 */
import type { IncomingHttpHeaders } from 'node:http';

/** Sec-Fetch-Site values of a request a user or this server's own page made: typed in the address bar, a bookmark, or same-origin. */
const OWN = new Set(['same-origin', 'none']);

/**
 * Why a request with `headers` must not change anything, or undefined when it may: a browser marked it as
 * coming from another origin (`Sec-Fetch-Site` other than same-origin or none; a `same-site` sibling
 * subdomain is another origin too), or its `Origin` names another host than its `Host` (or is "null", a
 * sandboxed or opaque page). Pure; the listener calls it for every method that can write.
 */
export function crossSiteRefusal(headers: IncomingHttpHeaders): string | undefined {
  const site = headers['sec-fetch-site'];
  if (site !== undefined && !OWN.has(site.toLowerCase())) {
    return `a write from another site is refused (Sec-Fetch-Site: ${site}); use the console on this server, or a client that is not a browser`;
  }
  const origin = headers.origin;
  if (origin === undefined) return undefined;
  const host = headers.host;
  if (origin === 'null' || host === undefined || !sameHost(origin, host)) {
    return `a write from another site is refused (Origin ${JSON.stringify(origin)} is not this server, ${JSON.stringify(host ?? '')}); use the console on this server, or a client that is not a browser`;
  }
  return undefined;
}

/** True when `origin` (scheme://host[:port]) names the same host and port as the Host header `host`, default ports spelled or not. */
function sameHost(origin: string, host: string): boolean {
  let from: URL;
  try {
    from = new URL(origin);
  } catch {
    return false;
  }
  if (from.protocol !== 'http:' && from.protocol !== 'https:') return false;
  let to: URL;
  try {
    // The Host header read under the origin's scheme, so ":80" for http and ":443" for https drop out on both sides.
    to = new URL(`${from.protocol}//${host}`);
  } catch {
    return false;
  }
  return to.host === from.host && to.pathname === '/' && to.username === '' && to.password === '';
}
