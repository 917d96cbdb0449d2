import assert from "node:assert/strict";
import { test } from "node:test";
import { DIRECT, isPrivacyPassService, proxyInfo } from "../src/route.js";
import { parseSettings } from "../src/settings.js";

const TEMPLATE = "/.well-known/masque/udp/{target_host}/{target_port}/";
const ATTESTER = "https://127.0.0.1:4434/token-request";
const DIRECTORY = "https://127.0.0.1:4434/.well-known/private-token-issuer-directory";
const HEADER = 'PrivateToken token="AAIA"';
const on = (extra = {}) => parseSettings({ enabled: true, proxy: "127.0.0.1:4433", attester: ATTESTER, directory: DIRECTORY, accountKey: "k", ...extra });

test("modes choose masque, https or both in failover order", async (t) => {
  const opts = { header: HEADER, isolationKey: "k1" };
  const masque = { type: "masque", host: "127.0.0.1", port: 4433, masqueTemplate: TEMPLATE, proxyAuthorizationHeader: HEADER, connectionIsolationKey: "k1" };
  const https = { type: "https", host: "127.0.0.1", port: 4433, proxyAuthorizationHeader: HEADER, connectionIsolationKey: "k1" };
  const cases = [
    ["auto", [masque, https]],
    ["h3", [masque]],
    ["https", [https]],
  ];
  for (const [mode, want] of cases) {
    await t.test(mode, () => assert.deepEqual(proxyInfo(on({ mode }), "https://example.com/", opts), want));
  }
});

test("an IPv6 proxy is given without brackets", () => {
  const [p] = proxyInfo(on({ proxy: "[::1]:4433", mode: "h3" }), "https://example.com/");
  assert.equal(p.host, "::1");
  assert.equal(p.port, 4433);
});

test("no header or key without a token or group", () => {
  const [p] = proxyInfo(on({ mode: "https" }), "https://example.com/");
  assert.deepEqual(p, { type: "https", host: "127.0.0.1", port: 4433 });
});

test("direct for the attester and directory only", async (t) => {
  const s = on();
  const cases = [
    [ATTESTER, true],
    [`${ATTESTER}?x=1`, true],
    [DIRECTORY, true],
    ["https://127.0.0.1:4434/", false],
    ["https://127.0.0.1:4434/token-request/more", false],
    ["http://127.0.0.1:4434/token-request", false],
    ["https://127.0.0.1:4435/token-request", false],
    ["https://example.com/token-request", false],
    ["not a url", false],
  ];
  for (const [url, direct] of cases) {
    await t.test(url, () => {
      assert.equal(isPrivacyPassService(s, url), direct);
      const got = proxyInfo(s, url, { header: HEADER, isolationKey: "k" });
      if (direct) {
        assert.deepEqual(got, DIRECT);
      } else {
        assert.ok(Array.isArray(got));
      }
    });
  }
  assert.equal(isPrivacyPassService(parseSettings({ enabled: true, proxy: "127.0.0.1:1" }), ATTESTER), false);
});

test("direct for everything while disabled or before settings load", () => {
  for (const s of [on({ enabled: false }), null]) {
    assert.deepEqual(proxyInfo(s, "https://example.com/", { header: HEADER, isolationKey: "k" }), DIRECT);
  }
});

test("a direct answer never carries a token", () => {
  const urls = [ATTESTER, DIRECTORY];
  for (const s of [on(), on({ enabled: false }), null]) {
    for (const url of [...urls, "https://example.com/"]) {
      const got = proxyInfo(s, url, { header: HEADER, isolationKey: "k" });
      if (!Array.isArray(got)) {
        assert.ok(!JSON.stringify(got).includes("PrivateToken"), `${url}: ${JSON.stringify(got)}`);
        assert.equal(got.type, "direct");
      }
    }
  }
  assert.ok(Object.isFrozen(DIRECT));
});
