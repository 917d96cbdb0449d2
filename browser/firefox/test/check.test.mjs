import assert from "node:assert/strict";
import { test } from "node:test";
import { describe, PHASES, PROBE_PARAM, probeId, probeURL, verdict } from "../src/check.js";

test("probe URLs carry their id and nothing else matches", () => {
  const u = probeURL("https://example.com/path?q=1#frag", "abc");
  assert.equal(u, `https://example.com/path?q=1&${PROBE_PARAM}=abc#frag`);
  assert.equal(probeId(u), "abc");
  assert.equal(probeId("https://example.com/?q=1"), "");
  assert.equal(probeId("not a url"), "");
});

test("the phases and their order", () => {
  assert.deepEqual(PHASES.map((p) => [p.name, p.token, p.want]), [
    ["noToken", "none", "refused"],
    ["fresh", "fresh", "admitted"],
    ["replay", "same", "refused"],
  ]);
});

test("verdict is ok only for refused, admitted, refused", async (t) => {
  const R = "refused";
  const A = "admitted";
  const cases = [
    [{ noToken: R, fresh: A, replay: R }, true, /enforces tokens/],
    [{ noToken: A, fresh: A, replay: R }, false, /without a token/],
    [{ noToken: R, fresh: R, replay: R }, false, /fresh token/],
    [{ noToken: R, fresh: A, replay: A }, false, /replayed token/],
    [{ noToken: A, fresh: A, replay: A }, false, /without a token.*replayed token/],
  ];
  for (const [outcomes, ok, text] of cases) {
    await t.test(JSON.stringify(outcomes), () => {
      const r = verdict(outcomes);
      assert.deepEqual(r, { ...outcomes, ok });
      assert.deepEqual(Object.keys(JSON.parse(JSON.stringify(r))), ["noToken", "fresh", "replay", "ok"]);
      assert.match(describe(r), text);
    });
  }
});
