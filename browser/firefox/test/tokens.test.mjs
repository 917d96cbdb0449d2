// masqued's Privacy Pass wire format, and a real type-2 token minted through
// an attester and issuer served on loopback by privacypass-ts's own Issuer.

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { createServer } from "node:http";
import { test } from "node:test";
import { AuthorizationHeader, publicVerif, Token, TOKEN_TYPES, TokenChallenge } from "@cloudflare/privacypass-ts";
import { MintError } from "../src/pool.js";
import { base64url, challengeFor, formatCredentials, fromBase64url, issuerKey, minter, mintToken } from "../src/tokens.js";

const { BlindRSAMode, Issuer, TokenRequest, getPublicKeyBytes } = publicVerif;
const hex = (s) => Uint8Array.from(Buffer.from(s, "hex"));
const toHex = (b) => Buffer.from(b).toString("hex");
const sha256 = (b) => new Uint8Array(createHash("sha256").update(b).digest());

// From RFC 9578 Appendix A.2 (the second type-2 vector): the issuer's
// token key, a token, and SHA-256 of the key as RFC 9577's vectors give it
// (token_key_id).
const RFC_PKS =
  "30820152303d06092a864886f70d01010a3030a00d300b0609608648016503040202a11a301806092a864886f70d010108300b0609608648016503040202a2030201300382010f003082010a0282010100cb1aed6b6a95f5b1ce013a4cfcab25b94b2e64a23034e4250a7eab43c0df3a8c12993af12b111908d4b471bec31d4b6c9ad9cdda90612a2ee903523e6de5a224d6b02f09e5c374d0cfe01d8f529c500a78a2f67908fa682b5a2b430c81eaf1af72d7b5e794fc98a3139276879757ce453b526ef9bf6ceb99979b8423b90f4461a22af37aab0cf5733f7597abe44d31c732db68a181c6cbbe607d8c0e52e0655fd9996dc584eca0be87afbcd78a337d17b1dba9e828bbd81e291317144e7ff89f55619709b096cbb9ea474cead264c2073fe49740c01f00e109106066983d21e5f83f086e2e823c879cd43cef700d2a352a9babd612d03cad02db134b7e225a5f0203010001";
const RFC_KEY_ID = "ca572f8982a9ca248a3056186322d93ca147266121ddeb5632c07f1f71cd2708";
const RFC_TOKEN =
  "000298c1345ff38a554b429b428b0f206cfe4f3892f8041995f2c24873d90e84488d11e15c91a7c2ad02abd66645802373db1d823bea80f08d452541fb2b62b5898bca572f8982a9ca248a3056186322d93ca147266121ddeb5632c07f1f71cd27083350a206c5e9b7c0898f97611ce0bb8d74d310bb194ab67e094e32ff6da90886924b1b9e7b569402c1101d896d2fc3a7371ef77f02310db1dc9f81c8535828c2d0e9d9051720d182cd54e1c2c3bf417da2fc7aa72bb70ccc834ef274a2e809c9821b3d395d6535423f7428b3f29175d6eb840b4b7685336e57e2b6afeaabc0c17ea4f557e8a9cc2f624e245c6ccd7cbdd6c32c97c5c6974e802f688e2d25f0aba4215f609f692244517d5d3407e0172273982c001c158f5fcbe1b5d2447c26a87e89f5a9e72b498b0c59ce749823d2cf253d3cf6cd4e64fa0e434d95e488789247a9ceed756ff4ff33a8d2402c0db381236d331092838b608a42002552092897";
// privacypass.FormatCredentials(RFC_TOKEN), printed by masqued's Go code.
const GO_CREDENTIALS =
  'PrivateToken token="AAKYwTRf84pVS0KbQosPIGz-TziS-AQZlfLCSHPZDoRIjRHhXJGnwq0Cq9ZmRYAjc9sdgjvqgPCNRSVB-ytitYmLylcviYKpyiSKMFYYYyLZPKFHJmEh3etWMsB_H3HNJwgzUKIGxem3wImPl2Ec4LuNdNMQuxlKtn4JTjL_bakIhpJLG557VpQCwRAdiW0vw6c3Hvd_AjENsdyfgchTWCjC0OnZBRcg0YLNVOHCw79BfaL8eqcrtwzMg07ydKLoCcmCGz05XWU1Qj90KLPykXXW64QLS3aFM25X4rav6qvAwX6k9VfoqcwvYk4kXGzNfL3WwyyXxcaXToAvaI4tJfCrpCFfYJ9pIkRRfV00B-AXInOYLAAcFY9fy-G10kR8Jqh-ifWp5ytJiwxZznSYI9LPJT089s1OZPoOQ02V5Ih4kkepzu11b_T_M6jSQCwNs4EjbTMQkoOLYIpCACVSCSiX"';
// The DER AlgorithmIdentifier masqued requires of a type-2 key
// (privacypass/rsakey.go rsaPSSAlgorithm), after the SPKI's SEQUENCE header.
const GO_RSA_PSS_ALGORITHM = "303d06092a864886f70d01010a3030a00d300b0609608648016503040202a11a301806092a864886f70d010108300b0609608648016503040202a2030201" + "30";

test("credentials are masqued's FormatCredentials, padded base64url", async (t) => {
  await t.test("RFC 9578 token", () => assert.equal(formatCredentials(hex(RFC_TOKEN)), GO_CREDENTIALS));
  await t.test("padding and the URL alphabet", () => assert.equal(formatCredentials(Uint8Array.of(0xfb, 0xff)), 'PrivateToken token="-_8="'));
  await t.test("as privacypass-ts writes it", () => {
    const tok = Token.deserialize(TOKEN_TYPES.BLIND_RSA, hex(RFC_TOKEN));
    assert.equal(new AuthorizationHeader(tok).toString(true), GO_CREDENTIALS);
  });
  await t.test("round trip", () => {
    for (let n = 0; n < 8; n++) {
      const b = Uint8Array.from({ length: n }, (_, i) => 250 + i);
      assert.deepEqual(fromBase64url(base64url(b)), b);
      assert.deepEqual(fromBase64url(base64url(b).replace(/=+$/, "")), b, "unpadded too");
    }
  });
});

test("the challenge is the one masqued sends", async (t) => {
  // Expected bytes: RFC 9578 A.2 token_challenge values, and Go's
  // privacypass.TokenChallenge.MarshalBinary for masqued-like names.
  const cases = [
    ["RFC: no origin", { directory: "https://issuer.example/.well-known/private-token-issuer-directory", proxy: "" }, "0002000e6973737565722e6578616d706c65000000"],
    ["RFC: origin", { directory: "https://issuer.example/d", proxy: "origin.example" }, "0002000e6973737565722e6578616d706c6500000e6f726967696e2e6578616d706c65"],
    ["masqued in-process issuer", { directory: "https://127.0.0.1:4434/.well-known/private-token-issuer-directory", proxy: "127.0.0.1:4433" }, "0002000e3132372e302e302e313a3434333400000e3132372e302e302e313a34343333"],
    ["IPv6 proxy", { directory: "https://proxy.example.net:4434/d", proxy: "[::1]:4433" }, "0002001670726f78792e6578616d706c652e6e65743a3434333400000a5b3a3a315d3a34343333"],
  ];
  for (const [name, s, want] of cases) {
    await t.test(name, () => assert.equal(toHex(challengeFor(s).serialize()), want));
  }
});

test("a masqued token key: id and SPKI form", async () => {
  assert.equal(toHex(sha256(hex(RFC_PKS))), RFC_KEY_ID);
  assert.ok(RFC_PKS.slice(8).startsWith(GO_RSA_PSS_ALGORITHM));
  // privacypass-ts takes masqued's key encoding as it is.
  const req = await new publicVerif.Client(BlindRSAMode.PSS).createTokenRequest(new TokenChallenge(2, "issuer.example", new Uint8Array(0)), hex(RFC_PKS));
  assert.equal(req.truncatedTokenKeyId, 0x08, "the last byte of the key id");
  assert.equal(req.serialize().length, 2 + 1 + 256);
});

test("issuerKey picks the first current type-2 key", () => {
  const now = Date.parse("2026-12-03T20:00:00Z");
  const k = (type, bytes, notBefore) => ({ "token-type": type, "token-key": base64url(Uint8Array.from(bytes)), ...(notBefore ? { "not-before": notBefore } : {}) });
  const dir = { "issuer-request-uri": "/token-request", "token-keys": [k(1, [1]), k(2, [2], now / 1000 + 60), k(2, [3], now / 1000 - 60), k(2, [4])] };
  assert.deepEqual(issuerKey(dir, now), Uint8Array.of(3));
  assert.throws(() => issuerKey({ "token-keys": [k(1, [1])] }, now), /no current type-2/);
  assert.throws(() => issuerKey({}, now), /no current type-2/);
  assert.throws(() => issuerKey(null, now), /no current type-2/);
});

/**
 * startIssuer serves, on 127.0.0.1, an issuer directory and an attester
 * in front of privacypass-ts's Issuer, as masqued's in-process ones do. It
 * records each token request and answers with answer(req) when that
 * returns a status.
 */
async function startIssuer(t, answer = () => null) {
  const keys = await Issuer.generateKey(BlindRSAMode.PSS, { modulusLength: 2048, publicExponent: Uint8Array.of(1, 0, 1) });
  const issuer = new Issuer(BlindRSAMode.PSS, "127.0.0.1", keys.privateKey, keys.publicKey);
  const spki = await getPublicKeyBytes(issuer.publicKey);
  const seen = { requests: [], directory: 0 };
  const server = createServer(async (req, res) => {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const body = new Uint8Array(Buffer.concat(chunks));
    if (req.method === "GET" && req.url === "/.well-known/private-token-issuer-directory") {
      seen.directory++;
      res.writeHead(200, { "Content-Type": "application/private-token-issuer-directory" });
      res.end(JSON.stringify({ "issuer-request-uri": "/token-request", "token-keys": [{ "token-type": 2, "token-key": base64url(spki), "not-before": 1 }] }));
      return;
    }
    seen.requests.push({ headers: req.headers, body });
    const refusal = answer(req);
    if (refusal) {
      res.writeHead(refusal.status, refusal.headers ?? {});
      res.end();
      return;
    }
    if (req.headers.authorization !== "Bearer demo-key" || req.headers["content-type"] !== "application/private-token-request") {
      res.writeHead(401);
      res.end();
      return;
    }
    const resp = await issuer.issue(TokenRequest.deserialize(TOKEN_TYPES.BLIND_RSA, body));
    res.writeHead(200, { "Content-Type": "application/private-token-response" });
    res.end(resp.serialize());
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  t.after(() => new Promise((r) => server.close(r)));
  const base = `http://127.0.0.1:${server.address().port}`;
  return { issuer, spki, seen, attester: `${base}/token-request`, directory: `${base}/.well-known/private-token-issuer-directory` };
}

test("mints a real type-2 token through the attester", async (t) => {
  const srv = await startIssuer(t);
  const settings = { attester: srv.attester, directory: srv.directory, accountKey: "demo-key", proxy: "127.0.0.1:4433" };
  const mint = minter(settings, { fetch, now: Date.now });
  const header = await mint(new AbortController().signal);
  assert.match(header, /^PrivateToken token="[A-Za-z0-9_-]+={0,2}"$/);
  const tokBytes = fromBase64url(header.slice('PrivateToken token="'.length, -1));

  // The TokenRequest (RFC 9578 §6.1): type, truncated key id, blinded message.
  const [req] = srv.seen.requests;
  assert.equal(req.headers.accept, "application/private-token-response");
  const keyId = sha256(srv.spki);
  assert.equal(req.body.length, 2 + 1 + 256);
  assert.equal(toHex(req.body.subarray(0, 2)), "0002");
  assert.equal(req.body[2], keyId[31]);

  // The Token (RFC 9577 §2.2): type, nonce, challenge digest, key id, authenticator.
  assert.equal(tokBytes.length, 2 + 32 + 32 + 32 + 256);
  assert.equal(toHex(tokBytes.subarray(0, 2)), "0002");
  // The challenge laid out by hand as masqued's Go code does: type,
  // issuer_name<2>, redemption_context<1> (empty), origin_info<2>.
  const issuerName = new URL(srv.directory).host;
  const origin = "127.0.0.1:4433";
  const challenge = Buffer.concat([Buffer.from([0, 2, 0, issuerName.length]), Buffer.from(issuerName), Buffer.from([0, 0, origin.length]), Buffer.from(origin)]);
  assert.equal(toHex(tokBytes.subarray(34, 66)), toHex(sha256(challenge)));
  assert.equal(toHex(tokBytes.subarray(66, 98)), toHex(keyId), "key id = SHA-256 of the SPKI, as privacypass/keys.go");
  assert.equal(await srv.issuer.verify(Token.deserialize(TOKEN_TYPES.BLIND_RSA, tokBytes)), true);

  // Two tokens are two nonces; the directory is read once while fresh.
  const second = await mint(new AbortController().signal);
  assert.notEqual(second, header);
  assert.equal(srv.seen.directory, 1);
});

test("an attester's refusal is a MintError with its Retry-After", async (t) => {
  const srv = await startIssuer(t, (req) => (req.headers.authorization === "Bearer busy" ? { status: 429, headers: { "Retry-After": "3" } } : null));
  const challenge = challengeFor({ directory: srv.directory, proxy: "127.0.0.1:4433" });
  const key = srv.spki;
  await assert.rejects(mintToken({ fetch, attester: srv.attester, apiKey: "busy", challenge, key }), (err) => err instanceof MintError && err.status === 429 && err.retryAfter === "3");
  await assert.rejects(mintToken({ fetch, attester: srv.attester, apiKey: "wrong", challenge, key }), (err) => err instanceof MintError && err.status === 401 && err.retryAfter === "");
});
