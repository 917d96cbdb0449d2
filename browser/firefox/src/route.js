// The ProxyInfo choice for one request. Pure: background.js feeds it the
// settings, the request's URL and the isolation group's key and token.

import { parseProxy } from "./settings.js";

/** What Firefox is told for a request that must not use the proxy. */
export const DIRECT = Object.freeze({ type: "direct" });

/** sameResource compares two URLs without query or fragment. */
function sameResource(a, b) {
  try {
    const x = new URL(a);
    const y = new URL(b);
    return x.origin === y.origin && x.pathname === y.pathname;
  } catch {
    return false;
  }
}

/**
 * isPrivacyPassService says whether url is the attester or the issuer
 * directory, the only requests that go direct while proxying is on: tokens
 * are what the proxy asks for, so minting them cannot need one. The
 * attester sees the account anyway; it never sees a token.
 */
export function isPrivacyPassService(settings, url) {
  return settings.attester !== "" && (sameResource(url, settings.attester) || sameResource(url, settings.directory));
}

/**
 * proxyInfo answers proxy.onRequest. With proxying off, or before settings
 * are known (settings null), everything goes direct. Otherwise: mode "auto"
 * is masqued over HTTP/3 (type "masque": CONNECT for TCP targets and
 * CONNECT-UDP for origins Firefox knows speak h3) with masqued's HTTPS
 * front (type "https", HTTP/2 or HTTP/1.1 CONNECT) after it, which Firefox
 * fails over to in order when QUIC is blocked; "h3" and "https" are one of
 * the two only. header is the Proxy-Authorization value ("" for none) and
 * isolationKey the connectionIsolationKey: Firefox keys its proxy
 * connections by the key and not by the header, so each (key, header) pair
 * is one connection to the proxy with one token (see groups.js).
 */
export function proxyInfo(settings, url, { header = "", isolationKey = "" } = {}) {
  if (settings === null || !settings.enabled || settings.proxy === "" || isPrivacyPassService(settings, url)) {
    return DIRECT;
  }
  const { host, port } = parseProxy(settings.proxy);
  const common = { host, port };
  if (header !== "") {
    common.proxyAuthorizationHeader = header;
  }
  if (isolationKey !== "") {
    common.connectionIsolationKey = isolationKey;
  }
  const masque = { type: "masque", ...common, masqueTemplate: settings.template };
  const https = { type: "https", ...common };
  switch (settings.mode) {
    case "h3":
      return [masque];
    case "https":
      return [https];
    default:
      return [masque, https];
  }
}
