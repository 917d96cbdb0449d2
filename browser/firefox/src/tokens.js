// Privacy Pass for masqued: the TokenChallenge it accepts, its issuer
// directory, minting through its attester and the credentials header. The
// cryptography (blinding, finalisation) is @cloudflare/privacypass-ts's;
// this module only speaks masqued's wire format. fetch is injected.

import { TokenChallenge, publicVerif } from "@cloudflare/privacypass-ts";
import { MintError } from "./pool.js";

const { BlindRSAMode, Client, TokenResponse } = publicVerif;

/** The token type masqued's tokens have here: 0x0002, blind RSA 2048 (RFC 9578 §6). */
export const TOKEN_TYPE_BLIND_RSA = 2;

/**
 * challengeFor is the TokenChallenge masqued sends and checks: type 2,
 * issuer_name the issuer directory's host[:port], an empty
 * redemption_context (so that tokens can be minted ahead and pooled) and
 * origin_info the proxy's "host:port" (masqued's -listen address).
 */
export function challengeFor(settings) {
  const issuer = new URL(settings.directory).host;
  return new TokenChallenge(TOKEN_TYPE_BLIND_RSA, issuer, new Uint8Array(0), settings.proxy === "" ? undefined : [settings.proxy]);
}

/** base64url encodes with padding, as RFC 9577 asks and masqued's FormatCredentials writes. */
export function base64url(bytes) {
  let bin = "";
  for (const b of bytes) {
    bin += String.fromCharCode(b);
  }
  return btoa(bin).replaceAll("+", "-").replaceAll("/", "_");
}

/** fromBase64url decodes base64url, padded or not. */
export function fromBase64url(s) {
  const std = s.replaceAll("-", "+").replaceAll("_", "/").replace(/=+$/, "");
  const bin = atob(std + "=".repeat((4 - (std.length % 4)) % 4));
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}

/** formatCredentials is the Proxy-Authorization value presenting an encoded token (RFC 9577 §2.2.1). */
export function formatCredentials(token) {
  return `PrivateToken token="${base64url(token)}"`;
}

/**
 * issuerKey picks the directory's current type-2 token key (RFC 9578 §4:
 * the first whose not-before, in Unix seconds, has passed) as its encoded
 * bytes, or throws.
 */
export function issuerKey(directory, nowMs) {
  const keys = Array.isArray(directory?.["token-keys"]) ? directory["token-keys"] : [];
  for (const k of keys) {
    if (k["token-type"] === TOKEN_TYPE_BLIND_RSA && typeof k["token-key"] === "string" && !((k["not-before"] ?? 0) * 1000 > nowMs)) {
      return fromBase64url(k["token-key"]);
    }
  }
  throw new Error("the issuer directory lists no current type-2 token key");
}

/** fetchIssuerKey gets the directory at url and picks its key. */
export async function fetchIssuerKey(fetch, url, nowMs, signal) {
  const res = await fetch(url, { headers: { Accept: "application/private-token-issuer-directory" }, signal, credentials: "omit", cache: "no-store" });
  if (!res.ok) {
    throw new Error(`the issuer directory answered ${res.status}`);
  }
  return issuerKey(await res.json(), nowMs);
}

/**
 * mintToken gets one token for challenge under key (the encoded token key)
 * through the attester: the TokenRequest goes there with the account's API
 * key as a bearer token, the blind signature comes back (RFC 9578 §6). It
 * resolves with the encoded Token; an attester's refusal is a MintError.
 */
export async function mintToken({ fetch, attester, apiKey, challenge, key, signal }) {
  const client = new Client(BlindRSAMode.PSS);
  const req = await client.createTokenRequest(challenge, key);
  const res = await fetch(attester, {
    method: "POST",
    headers: {
      "Content-Type": "application/private-token-request",
      Accept: "application/private-token-response",
      Authorization: `Bearer ${apiKey}`,
    },
    body: req.serialize(),
    signal,
    credentials: "omit",
    cache: "no-store",
  });
  if (res.status !== 200) {
    throw new MintError(res.status, res.headers.get("Retry-After") ?? "");
  }
  const type = (res.headers.get("Content-Type") ?? "").split(";")[0].trim().toLowerCase();
  if (type !== "application/private-token-response") {
    throw new Error(`the attester answered Content-Type "${type}"`);
  }
  const token = await client.finalize(TokenResponse.deserialize(new Uint8Array(await res.arrayBuffer())));
  return token.serialize();
}

/** How long a fetched issuer key is used before the directory is read again. */
export const KEY_TTL_MS = 60_000;

/**
 * minter is the pool's mint function for settings: it resolves with the
 * credentials header for a new token, reading the issuer directory again
 * after KEY_TTL_MS (so a rotated key is picked up) or after a failed mint.
 */
export function minter(settings, { fetch, now }) {
  const challenge = challengeFor(settings);
  let cached = null; // {key, at}
  return async (signal) => {
    if (cached === null || now() - cached.at >= KEY_TTL_MS) {
      cached = { key: await fetchIssuerKey(fetch, settings.directory, now(), signal), at: now() };
    }
    const { key } = cached;
    try {
      const token = await mintToken({ fetch, attester: settings.attester, apiKey: settings.accountKey, challenge, key, signal });
      return formatCredentials(token);
    } catch (err) {
      cached = null;
      throw err;
    }
  };
}
