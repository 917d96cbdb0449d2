// Isolation groups: which proxy connection, and so which token, a request
// goes on. Pure: the clock and the key source are injected.
//
// Firefox keys a proxy connection by connectionIsolationKey and not by
// proxyAuthorizationHeader (nsHttpConnectionInfo::BuildHashKey), so
// requests with one key share a connection whose tunnels all carry the
// header of the request that opened it. A token per tunnel is therefore out
// of reach; a token per connection is not: each group pairs a fresh key
// with a fresh token, and masqued in -pp-per-connection mode admits every
// further tunnel of a connection whose first request carried a good token.
//
// A group is one top-level site, so the proxy cannot link a user's sites by
// their connection. It is retired, and the next request of its site gets a
// new key and token, when
//   - it was idle for rotateIdleSeconds: an idle QUIC connection closes
//     (after 30 s in Firefox ESR 153, 60 s in masqued), and Firefox would
//     reopen it under the same key with the same, now spent, token;
//     rotating before that (the setting must stay below both timeouts)
//     opens a new one instead. Idle counts from a request's start, which
//     is never later than the connection's last packet;
//   - the proxy refused its token (retire), for the same reason;
//   - the settings changed (clear);
//   - it got no token (the pool was empty) and one is available now.

/** hostOf is url's hostname, or "" when url is missing or not a URL. */
function hostOf(url) {
  if (!url) {
    return "";
  }
  try {
    return new URL(url).hostname;
  } catch {
    return "";
  }
}

/**
 * siteOf is the host of the top-level document a webRequest details object
 * belongs to: the URL's own for a top-level load, else the last (topmost)
 * frame ancestor's, else the document's or the originator's, else the
 * URL's.
 */
export function siteOf(details) {
  if (details.type === "main_frame") {
    return hostOf(details.url);
  }
  const anc = details.frameAncestors;
  if (Array.isArray(anc) && anc.length > 0) {
    const top = hostOf(anc[anc.length - 1].url);
    if (top !== "") {
      return top;
    }
  }
  return hostOf(details.documentUrl) || hostOf(details.originUrl) || hostOf(details.url);
}

/** randomKey is an unguessable isolation key, by crypto.getRandomValues. */
export function randomKey() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

/**
 * Groups holds the live isolation groups. take() gives a token for a new
 * group or null; hasToken() says whether take() would give one. now() is
 * the clock in milliseconds, newKey() the isolation key source.
 */
export class Groups {
  constructor({ rotateIdleMs, take, hasToken = () => false, now = Date.now, newKey = randomKey }) {
    this.rotateIdleMs = rotateIdleMs;
    this.take = take;
    this.hasToken = hasToken;
    this.now = now;
    this.newKey = newKey;
    /** @type {Map<string, {site: string, key: string, token: string|null, lastUsed: number}>} */
    this.bySite = new Map();
  }

  /**
   * get returns site's group, touched now, making a new one (with a new key
   * and a token from take) when there is none or it must be retired.
   */
  get(site) {
    const now = this.now();
    let g = this.bySite.get(site);
    if (g && (now - g.lastUsed >= this.rotateIdleMs || (g.token === null && this.hasToken()))) {
      g = undefined;
    }
    if (!g) {
      g = { site, key: this.newKey(), token: this.take(), lastUsed: now };
      this.bySite.set(site, g);
    }
    g.lastUsed = now;
    return g;
  }

  /** fill gives g the token it lacked, if it is still live and still lacks one. */
  fill(g, token) {
    if (this.bySite.get(g.site) !== g || g.token !== null) {
      return false;
    }
    g.token = token;
    return true;
  }

  /** retire drops the group whose isolation key is key, after a proxy auth failure. */
  retire(key) {
    for (const [site, g] of this.bySite) {
      if (g.key === key) {
        this.bySite.delete(site);
        return true;
      }
    }
    return false;
  }

  /** clear drops every group, when the settings change. */
  clear() {
    this.bySite.clear();
  }

  /** live counts the groups not yet idle past rotateIdleMs, dropping the rest. */
  live() {
    const now = this.now();
    for (const [site, g] of this.bySite) {
      if (now - g.lastUsed >= this.rotateIdleMs) {
        this.bySite.delete(site);
      }
    }
    return this.bySite.size;
  }
}
