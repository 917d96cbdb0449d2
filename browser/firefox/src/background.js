// The background page: wires the pure modules to Firefox's proxy,
// webRequest, storage, runtime and browserAction APIs. Tokens and the
// account key live here only. A token leaves it only in a ProxyInfo for the
// configured proxy, the key only in the Authorization header of requests to
// the configured attester. There are no content scripts, so no web page can
// reach either. Logs hold counts and errors, never a token, the key or a URL.

import { describe, PHASES, probeId, probeURL, verdict } from "./check.js";
import { Groups, randomKey, siteOf } from "./groups.js";
import { realClock, TokenPool } from "./pool.js";
import { DIRECT, isPrivacyPassService, proxyInfo } from "./route.js";
import { DEFAULTS, mergeForm, parseSettings, privacyPass, publicView, STORAGE_KEY } from "./settings.js";
import { minter } from "./tokens.js";

/** How long a request of a new group waits for a token when the pool is empty. */
const TOKEN_WAIT_MS = 5_000;
/** How long the check waits for a token (generous: minting is two round trips). */
const CHECK_WAIT_MS = 30_000;
/**
 * How long a probe may take: a bound for a proxy that never answers. A
 * refusal fails the fetch at once (over HTTP/3 since masqued stopped sending
 * STOP_SENDING with it; before, Firefox hung); an admitted fetch takes a
 * second or two.
 */
const PROBE_WAIT_MS = 15_000;
/** Requests whose group is remembered for auth failures, at most (they are forgotten when they end). */
const MAX_TRACKED = 10_000;

let settings = null; // null until storage has been read
let pool = null; // the token pool while Privacy Pass is configured
let groups = newGroups(DEFAULTS);
let mintedBefore = 0; // tokens minted by pools since stopped
let presented = 0; // tokens put into a ProxyInfo, each counted once
const requestKey = new Map(); // requestId → isolation key, for auth failures
const probes = new Map(); // probe id → {header, isolationKey}

function newGroups(s) {
  return new Groups({
    rotateIdleMs: s.rotateIdleSeconds * 1000,
    take: () => pool?.take() ?? null,
    hasToken: () => (pool?.size ?? 0) > 0,
  });
}

/** settingsFrom reads stored settings, falling back to the (disabled) defaults. */
function settingsFrom(raw) {
  try {
    return parseSettings(raw ?? {});
  } catch (err) {
    console.error("masqued: stored settings are invalid, using the defaults:", err.message);
    return parseSettings({});
  }
}

/**
 * apply makes s the settings in force. Any change retires every isolation
 * group and the token pool: tokens are bound to the proxy and issuer.
 */
function apply(s) {
  if (settings !== null && JSON.stringify(settings) === JSON.stringify(s)) {
    return;
  }
  settings = s;
  if (pool !== null) {
    mintedBefore += pool.minted;
    pool.stop();
    pool = null;
  }
  if (privacyPass(s)) {
    pool = new TokenPool({ mint: minter(s, { fetch: (...a) => fetch(...a), now: realClock.now }), target: s.poolSize });
    pool.refill();
  }
  groups = newGroups(s);
  requestKey.clear();
  showState();
}

function showState() {
  const on = settings?.enabled === true;
  browser.browserAction.setBadgeText({ text: on ? "on" : "off" });
  browser.browserAction.setBadgeBackgroundColor({ color: on ? "#2a7a2a" : "#777777" });
  browser.browserAction.setTitle({ title: on ? `masqued: proxying through ${settings.proxy}` : "masqued: proxying off" });
}

const loaded = browser.storage.local
  .get(STORAGE_KEY)
  .then(
    (r) => r[STORAGE_KEY],
    (err) => {
      console.error("masqued: reading the settings failed, using the defaults:", err.message);
      return undefined;
    },
  )
  .then((raw) => apply(settingsFrom(raw)));

/** present returns g's header, counting its token the first time it goes out. */
function present(g) {
  if (g.token !== null && !g.presented) {
    g.presented = true;
    presented++;
  }
  return g.token ?? "";
}

/**
 * route answers onRequest once settings are known. A request of a new
 * group while the pool is empty waits (up to TOKEN_WAIT_MS) for the token
 * being minted rather than open a connection the proxy would refuse.
 */
async function route(details) {
  const s = settings;
  const probe = probes.get(probeId(details.url));
  if (probe !== undefined) {
    return proxyInfo({ ...s, enabled: true }, details.url, probe);
  }
  if (!s.enabled || isPrivacyPassService(s, details.url)) {
    return DIRECT;
  }
  const g = groups.get(siteOf(details));
  if (g.token === null && pool !== null) {
    g.waiting ??= pool.next(TOKEN_WAIT_MS).then((tok) => tok !== null && groups.fill(g, tok));
    await g.waiting;
    if (settings !== s) {
      return route(details);
    }
  }
  if (requestKey.size >= MAX_TRACKED) {
    requestKey.clear();
  }
  requestKey.set(details.requestId, g.key);
  return proxyInfo(s, details.url, { header: present(g), isolationKey: g.key });
}

// Registered synchronously in the script's first turn, before anything is
// awaited: requests made in the first moments after a listener is added
// late were seen to bypass it. Until storage is read, requests wait for it
// (and go direct only if nothing was ever saved: proxying is then off).
browser.proxy.onRequest.addListener(
  (details) => (settings === null ? loaded.then(() => route(details)) : route(details)),
  { urls: ["<all_urls>"] },
);
browser.proxy.onError.addListener((err) => console.error("masqued: proxy error:", err.message));

/**
 * authFailed retires the group of a request the proxy refused, so that the
 * site's next request opens a new connection with a new token instead of
 * reopening one whose token is spent.
 */
function authFailed(details, why) {
  const key = requestKey.get(details.requestId);
  if (key !== undefined && groups.retire(key)) {
    console.warn("masqued: the proxy refused a token; the site gets a new connection:", why);
  }
}

// What Firefox 153 does when the proxy answers 407 (seen with masqued):
// through an "https" proxy (HTTP/2 CONNECT) onHeadersReceived reports the
// 407 and onErrorOccurred NS_ERROR_PROXY_AUTHENTICATION_FAILED; an unknown
// scheme such as PrivateToken raises no onAuthRequired. Through a "masque"
// proxy (HTTP/3) the request fails as refused, with no 407 reported, so for
// HTTP/3 only the idle rotation keeps spent tokens from being resent.
// onAuthRequired is listened to in case a version starts reporting proxy
// challenges there.
const all = { urls: ["<all_urls>"] };
browser.webRequest.onAuthRequired.addListener((d) => {
  if (d.isProxy) {
    authFailed(d, "proxy auth required");
  }
}, all);
browser.webRequest.onHeadersReceived.addListener((d) => {
  if (d.statusCode === 407) {
    authFailed(d, "407");
  }
}, all);
browser.webRequest.onCompleted.addListener((d) => requestKey.delete(d.requestId), all);
browser.webRequest.onErrorOccurred.addListener((d) => {
  if (d.error === "NS_ERROR_PROXY_AUTHENTICATION_FAILED") {
    authFailed(d, d.error);
  }
  requestKey.delete(d.requestId);
}, all);

async function save(form) {
  await loaded;
  let s;
  try {
    s = mergeForm(settings, form);
  } catch (err) {
    return { error: err.message };
  }
  await browser.storage.local.set({ [STORAGE_KEY]: { ...s } });
  apply(s);
  return { ok: true, settings: publicView(s) };
}

browser.storage.onChanged.addListener((changes, area) => {
  if (area === "local" && STORAGE_KEY in changes) {
    apply(settingsFrom(changes[STORAGE_KEY].newValue));
  }
});

function status() {
  return {
    pooled: pool?.size ?? 0,
    minted: mintedBefore + (pool?.minted ?? 0),
    presented,
    groups: groups.live(),
    error: pool?.lastError ?? "",
    privacyPass: pool !== null,
  };
}

/** runProbe fetches url on a connection of its own with header, "admitted" if any answer came. */
async function runProbe(url, header) {
  const id = randomKey();
  probes.set(id, { header, isolationKey: randomKey() });
  try {
    await fetch(probeURL(url, id), { cache: "no-store", credentials: "omit", redirect: "manual", signal: AbortSignal.timeout(PROBE_WAIT_MS) });
    return "admitted";
  } catch {
    return "refused";
  } finally {
    probes.delete(id);
  }
}

/** check runs the three probes of check.js against the configured proxy. */
async function check(url) {
  await loaded;
  if (settings.proxy === "") {
    return { error: "set the proxy address first" };
  }
  if (pool === null) {
    return { error: "set the account key, attester and issuer directory first" };
  }
  let target;
  try {
    target = parseSettings({ ...settings, checkUrl: url }).checkUrl;
  } catch (err) {
    return { error: err.message };
  }
  const token = await pool.next(CHECK_WAIT_MS);
  if (token === null) {
    return { error: `no token to check with: ${pool.lastError || "minting timed out"}` };
  }
  presented++;
  const outcomes = {};
  for (const p of PHASES) {
    outcomes[p.name] = await runProbe(target, p.token === "none" ? "" : token);
  }
  const result = verdict(outcomes);
  return { result, text: describe(result) };
}

browser.runtime.onMessage.addListener((msg) => {
  switch (msg?.type) {
    case "get":
      return loaded.then(() => publicView(settings));
    case "save":
      return save(msg.form ?? {});
    case "status":
      return Promise.resolve(status());
    case "check":
      return check(String(msg.url ?? ""));
  }
  return undefined;
});

/** The toolbar button switches proxying on and off (and opens the options while there is no proxy to use). */
browser.browserAction.onClicked.addListener(async () => {
  await loaded;
  if (settings.proxy === "") {
    browser.runtime.openOptionsPage();
    return;
  }
  await save({ enabled: !settings.enabled });
});
