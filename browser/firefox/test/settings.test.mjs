import assert from "node:assert/strict";
import { test } from "node:test";
import { DEFAULTS, mergeForm, parseProxy, parseSettings, privacyPass, publicView, SettingsError } from "../src/settings.js";

test("parseProxy", async (t) => {
  const good = [
    ["127.0.0.1:4433", { host: "127.0.0.1", port: 4433, name: "127.0.0.1:4433" }],
    ["Proxy.Example.NET:443", { host: "proxy.example.net", port: 443, name: "proxy.example.net:443" }],
    ["[::1]:4433", { host: "::1", port: 4433, name: "[::1]:4433" }],
    ["[2001:DB8::1]:8443", { host: "2001:db8::1", port: 8443, name: "[2001:db8::1]:8443" }],
  ];
  for (const [in_, want] of good) {
    await t.test(in_, () => assert.deepEqual(parseProxy(in_), want));
  }
  const bad = ["", "127.0.0.1", "::1:4433", "[::1]", "host:0", "host:65536", "host:port", "https://host:443", "host:443/path", "[zz::1]:443", "a b:1", "user@host:1"];
  for (const in_ of bad) {
    await t.test(`bad ${JSON.stringify(in_)}`, () => assert.throws(() => parseProxy(in_), SettingsError));
  }
});

test("parseSettings fills defaults and stays disabled without a proxy", () => {
  const s = parseSettings({});
  assert.equal(s.enabled, false);
  assert.equal(s.mode, "auto");
  assert.equal(s.poolSize, 4);
  assert.equal(s.rotateIdleSeconds, 25);
  assert.equal(s.template, DEFAULTS.template);
  assert.ok(Object.isFrozen(s));
  assert.equal(privacyPass(s), false);
});

test("parseSettings normalises a good form", () => {
  const s = parseSettings({
    enabled: true, proxy: " [::1]:4433 ", mode: "h3", poolSize: "8", rotateIdleSeconds: "20", accountKey: " k ",
    attester: "https://127.0.0.1:4434/token-request", directory: "https://127.0.0.1:4434/.well-known/private-token-issuer-directory",
  });
  assert.equal(s.proxy, "[::1]:4433");
  assert.equal(s.poolSize, 8);
  assert.equal(s.rotateIdleSeconds, 20);
  assert.equal(s.accountKey, "k");
  assert.equal(privacyPass(s), true);
});

test("parseSettings refuses bad input, naming the field", async (t) => {
  const pp = { attester: "https://a.example/t", directory: "https://a.example/d" };
  const cases = [
    ["enabled without proxy", { enabled: true }, "proxy"],
    ["bad proxy", { proxy: "nope" }, "proxy"],
    ["template without target_port", { template: "/.well-known/masque/udp/{target_host}/" }, "template"],
    ["template without target_host", { template: "/.well-known/masque/udp/{target_port}/" }, "template"],
    ["template not a path", { template: "https://p/{target_host}/{target_port}/" }, "template"],
    ["unknown mode", { mode: "quic" }, "mode"],
    ["attester without directory", { attester: pp.attester }, "directory"],
    ["directory without attester", { directory: pp.directory }, "attester"],
    ["http attester", { ...pp, attester: "http://a.example/t" }, "attester"],
    ["http directory", { ...pp, directory: "http://a.example/d" }, "directory"],
    ["attester not a URL", { ...pp, attester: "a.example" }, "attester"],
    ["pool size 0", { poolSize: 0 }, "pool-size"],
    ["pool size not whole", { poolSize: "2.5" }, "pool-size"],
    ["pool size huge", { poolSize: 1000 }, "pool-size"],
    ["rotate-idle 0", { rotateIdleSeconds: 0 }, "rotate-idle"],
    ["rotate-idle text", { rotateIdleSeconds: "soon" }, "rotate-idle"],
    ["check url ftp", { checkUrl: "ftp://x/" }, "check-url"],
  ];
  for (const [name, raw, field] of cases) {
    await t.test(name, () => {
      assert.throws(() => parseSettings(raw), (err) => err instanceof SettingsError && err.field === field && err.message.startsWith(`${field}: `));
    });
  }
});

test("mergeForm keeps, replaces and clears the write-only key", () => {
  const stored = parseSettings({ proxy: "127.0.0.1:1", accountKey: "old" });
  assert.equal(mergeForm(stored, { accountKey: "" }).accountKey, "old");
  assert.equal(mergeForm(stored, { accountKey: "  new " }).accountKey, "new");
  assert.equal(mergeForm(stored, { clearKey: true }).accountKey, "");
  assert.equal(mergeForm(stored, { enabled: true }).enabled, true);
  assert.throws(() => mergeForm(stored, { mode: "x" }), SettingsError);
});

test("publicView never holds the key", () => {
  const v = publicView(parseSettings({ accountKey: "secret" }));
  assert.equal(v.keySet, true);
  assert.ok(!JSON.stringify(v).includes("secret"));
  assert.equal(publicView(parseSettings({})).keySet, false);
});
