// Settings: what the options page stores and the background applies, and
// the checks that keep a bad value from ever reaching the proxy API. Pure:
// no browser.* calls, so node tests it.

/** The one browser.storage.local key all settings live under. */
export const STORAGE_KEY = "settings";

/** The masqued path for CONNECT-UDP, the path part of its -udp-template. */
export const DEFAULT_TEMPLATE = "/.well-known/masque/udp/{target_host}/{target_port}/";

export const MODES = ["auto", "h3", "https"];

/**
 * Defaults: disabled until a proxy is set. rotateIdleSeconds must stay below
 * the idle timeout of the QUIC connection to the proxy (see groups.js),
 * which is the smaller of the proxy's (masqued: 60 s) and Firefox's own
 * (network.http.http3.idle_timeout: 30 s in Firefox ESR 153), hence 25.
 */
export const DEFAULTS = Object.freeze({
  enabled: false,
  proxy: "",
  template: DEFAULT_TEMPLATE,
  mode: "auto",
  accountKey: "",
  attester: "",
  directory: "",
  poolSize: 4,
  rotateIdleSeconds: 25,
  checkUrl: "https://example.com/",
});

/** SettingsError says which setting is wrong and why, for #status. */
export class SettingsError extends Error {
  constructor(field, reason) {
    super(`${field}: ${reason}`);
    this.name = "SettingsError";
    this.field = field;
  }
}

/**
 * parseProxy splits "host:port" or "[v6]:port" into the host ProxyInfo
 * wants (an IPv6 address without brackets) and the port, and gives the
 * canonical "host:port" that masqued names itself by in origin_info.
 */
export function parseProxy(s) {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]/?#@\s]+)):(\d{1,5})$/.exec(s);
  if (!m) {
    throw new SettingsError("proxy", `"${s}" is not host:port or [IPv6]:port`);
  }
  const port = Number(m[3]);
  if (port < 1 || port > 65535) {
    throw new SettingsError("proxy", `port ${m[3]} is out of range`);
  }
  let url;
  try {
    url = new URL(`https://${m[1] !== undefined ? `[${m[1]}]` : m[2]}/`);
  } catch {
    throw new SettingsError("proxy", `"${s}" has no valid host`);
  }
  const bracketed = url.hostname.startsWith("[");
  const host = bracketed ? url.hostname.slice(1, -1) : url.hostname;
  return { host, port, name: `${bracketed ? `[${host}]` : host}:${port}` };
}

function parseURL(field, s, protocols) {
  let u;
  try {
    u = new URL(s);
  } catch {
    throw new SettingsError(field, `"${s}" is not a URL`);
  }
  if (!protocols.includes(u.protocol)) {
    throw new SettingsError(field, `must be an ${protocols.map((p) => `${p}//`).join(" or ")} URL`);
  }
  return u.href;
}

function parseInt(field, v, min, max) {
  const n = typeof v === "number" ? v : Number(String(v).trim());
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new SettingsError(field, `must be a whole number from ${min} to ${max}`);
  }
  return n;
}

/**
 * parseSettings checks raw (from the options form or from storage, missing
 * fields taking DEFAULTS) and returns a complete, frozen settings object, or
 * throws a SettingsError naming the first bad field.
 */
export function parseSettings(raw) {
  const r = { ...DEFAULTS, ...raw };
  const s = {
    enabled: r.enabled === true,
    proxy: String(r.proxy).trim(),
    template: String(r.template).trim(),
    mode: String(r.mode),
    accountKey: String(r.accountKey).trim(),
    attester: String(r.attester).trim(),
    directory: String(r.directory).trim(),
    poolSize: parseInt("pool-size", r.poolSize, 1, 64),
    rotateIdleSeconds: parseInt("rotate-idle", r.rotateIdleSeconds, 1, 3600),
    checkUrl: String(r.checkUrl).trim(),
  };
  if (s.proxy !== "") {
    s.proxy = parseProxy(s.proxy).name;
  } else if (s.enabled) {
    throw new SettingsError("proxy", "set the proxy address before enabling");
  }
  if (!s.template.startsWith("/") || !s.template.includes("{target_host}") || !s.template.includes("{target_port}")) {
    throw new SettingsError("template", "must be a path with {target_host} and {target_port}");
  }
  if (!MODES.includes(s.mode)) {
    throw new SettingsError("mode", `must be one of ${MODES.join(", ")}`);
  }
  if ((s.attester === "") !== (s.directory === "")) {
    throw new SettingsError(s.attester === "" ? "attester" : "directory", "Privacy Pass needs both the attester and the issuer directory URL");
  }
  if (s.attester !== "") {
    s.attester = parseURL("attester", s.attester, ["https:"]);
    s.directory = parseURL("directory", s.directory, ["https:"]);
  }
  s.checkUrl = parseURL("check-url", s.checkUrl === "" ? DEFAULTS.checkUrl : s.checkUrl, ["https:", "http:"]);
  return Object.freeze(s);
}

/** privacyPass says whether s mints tokens: a key and where to mint them. */
export function privacyPass(s) {
  return s.attester !== "" && s.accountKey !== "";
}

/**
 * mergeForm applies what the options form sent to the stored settings: the
 * account key input is write-only, so an empty one keeps the stored key and
 * only clearKey removes it.
 */
export function mergeForm(stored, form) {
  const { accountKey = "", clearKey = false, ...rest } = form;
  let key = stored.accountKey ?? "";
  if (clearKey) {
    key = "";
  } else if (String(accountKey).trim() !== "") {
    key = String(accountKey).trim();
  }
  return parseSettings({ ...stored, ...rest, accountKey: key });
}

/** publicView is s without the account key: all the options page is shown. */
export function publicView(s) {
  const { accountKey, ...rest } = s;
  return { ...rest, keySet: accountKey !== "" };
}
