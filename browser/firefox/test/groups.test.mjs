import assert from "node:assert/strict";
import { test } from "node:test";
import { Groups, randomKey, siteOf } from "../src/groups.js";

test("siteOf is the top-level document's host", async (t) => {
  const cases = [
    ["main frame", { type: "main_frame", url: "https://news.example:8443/a", documentUrl: "https://other.example/" }, "news.example"],
    ["sub-resource", { type: "image", url: "https://cdn.example/i.png", documentUrl: "https://news.example/", frameAncestors: [] }, "news.example"],
    ["in a frame", { type: "script", url: "https://ads.example/s.js", documentUrl: "https://widget.example/", frameAncestors: [{ url: "https://mid.example/", frameId: 2 }, { url: "https://top.example/", frameId: 0 }] }, "top.example"],
    ["sub frame", { type: "sub_frame", url: "https://widget.example/", documentUrl: "https://top.example/", frameAncestors: [{ url: "https://top.example/", frameId: 0 }] }, "top.example"],
    ["originUrl only", { type: "xmlhttprequest", url: "https://api.example/", originUrl: "https://app.example/x" }, "app.example"],
    ["nothing but the URL", { type: "other", url: "https://lonely.example/" }, "lonely.example"],
    ["bad ancestor URL", { type: "image", url: "https://cdn.example/", documentUrl: "https://doc.example/", frameAncestors: [{ url: "about:blank" }] }, "doc.example"],
  ];
  for (const [name, d, want] of cases) {
    await t.test(name, () => assert.equal(siteOf(d), want));
  }
});

test("randomKey is 32 hex digits, different each time", () => {
  const a = randomKey();
  assert.match(a, /^[0-9a-f]{32}$/);
  assert.notEqual(a, randomKey());
});

/** fixture: Groups with a hand-moved clock, numbered keys and numbered tokens. */
function fixture({ tokens = Infinity } = {}) {
  const env = { t: 0, keys: 0, minted: 0, left: tokens };
  env.groups = new Groups({
    rotateIdleMs: 25_000,
    now: () => env.t,
    newKey: () => `key${++env.keys}`,
    take: () => (env.left-- > 0 ? `tok${++env.minted}` : null),
    hasToken: () => env.left > 0,
  });
  return env;
}

test("one group, key and token per site, shared by its requests", () => {
  const env = fixture();
  const a = env.groups.get("a.example");
  const a2 = env.groups.get("a.example");
  const b = env.groups.get("b.example");
  assert.equal(a, a2);
  assert.deepEqual([a.key, a.token, b.key, b.token], ["key1", "tok1", "key2", "tok2"]);
  assert.equal(env.groups.live(), 2);
});

test("a group idle for rotateIdleMs gets a new key and token", () => {
  const env = fixture();
  const g1 = env.groups.get("a.example");
  env.t += 24_999;
  assert.equal(env.groups.get("a.example"), g1, "used within the idle time: kept");
  env.t += 24_999;
  assert.equal(env.groups.get("a.example"), g1, "idle counts from the last use");
  env.t += 25_000;
  const g2 = env.groups.get("a.example");
  assert.notEqual(g2, g1);
  assert.deepEqual([g2.key, g2.token], ["key2", "tok2"]);
});

test("live drops idle groups", () => {
  const env = fixture();
  env.groups.get("a.example");
  env.t += 10_000;
  env.groups.get("b.example");
  env.t += 15_000;
  assert.equal(env.groups.live(), 1);
});

test("an auth failure retires that group only", () => {
  const env = fixture();
  const a = env.groups.get("a.example");
  const b = env.groups.get("b.example");
  assert.equal(env.groups.retire(a.key), true);
  assert.equal(env.groups.retire(a.key), false, "already retired");
  assert.equal(env.groups.retire("unknown"), false);
  const a2 = env.groups.get("a.example");
  assert.notEqual(a2.key, a.key);
  assert.notEqual(a2.token, a.token);
  assert.equal(env.groups.get("b.example"), b);
});

test("a settings change retires every group", () => {
  const env = fixture();
  const a = env.groups.get("a.example");
  env.groups.clear();
  assert.equal(env.groups.live(), 0);
  assert.notEqual(env.groups.get("a.example").key, a.key);
});

test("a group without a token is replaced once one is available", () => {
  const env = fixture({ tokens: 0 });
  const g1 = env.groups.get("a.example");
  assert.equal(g1.token, null);
  assert.equal(env.groups.get("a.example"), g1, "still no token: kept");
  env.left = 1;
  const g2 = env.groups.get("a.example");
  assert.notEqual(g2, g1);
  assert.equal(g2.token, "tok1");
});

test("fill gives a waiting group its token once", () => {
  const env = fixture({ tokens: 0 });
  const g = env.groups.get("a.example");
  assert.equal(env.groups.fill(g, "late"), true);
  assert.equal(g.token, "late");
  assert.equal(env.groups.fill(g, "later"), false);
  env.groups.clear();
  const g2 = env.groups.get("a.example");
  env.groups.clear();
  assert.equal(env.groups.fill(g2, "x"), false, "a retired group is not filled");
});
