import assert from "node:assert/strict";
import { test } from "node:test";
import { MintError, retryAfterMs, TokenPool } from "../src/pool.js";
import { FakeClock, settle } from "./helpers.mjs";

/**
 * Minter is a mint function whose calls the test answers one by one: each
 * call waits until ok() or fail() settles it. It records the most calls in
 * flight at once.
 */
class Minter {
  constructor() {
    this.calls = [];
    this.inFlight = 0;
    this.maxInFlight = 0;
    this.n = 0;
  }
  mint = (signal) => {
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    return new Promise((resolve, reject) => {
      const done = () => this.inFlight--;
      this.calls.push({
        signal,
        ok: () => (done(), resolve(`tok${++this.n}`)),
        fail: (err) => (done(), reject(err)),
      });
    });
  };
  get pending() {
    return this.calls.length;
  }
  async ok() {
    this.calls.shift().ok();
    await settle();
  }
  async fail(err) {
    this.calls.shift().fail(err);
    await settle();
  }
}

function newPool(extra = {}) {
  const m = new Minter();
  const clock = new FakeClock();
  const pool = new TokenPool({ mint: m.mint, target: 3, clock, backoffMs: 1000, maxBackoffMs: 8000, ...extra });
  return { m, clock, pool };
}

test("fills to target, one mint at a time", async () => {
  const { m, pool } = newPool();
  pool.refill();
  pool.refill();
  await settle();
  assert.equal(m.pending, 1);
  for (let i = 0; i < 3; i++) {
    await m.ok();
  }
  assert.equal(pool.size, 3);
  assert.equal(pool.minted, 3);
  assert.equal(m.pending, 0, "no mint past the target");
  assert.equal(m.maxInFlight, 1);
});

test("take hands out one token each and refills", async () => {
  const { m, pool } = newPool();
  pool.refill();
  for (let i = 0; i < 3; i++) await m.ok();
  assert.equal(pool.take(), "tok1");
  assert.equal(pool.take(), "tok2");
  assert.equal(pool.size, 1);
  await settle();
  assert.equal(m.pending, 1, "a refill started");
  await m.ok();
  await m.ok();
  assert.equal(pool.size, 3);
  assert.deepEqual(pool.tokens, ["tok3", "tok4", "tok5"]);
  assert.equal(m.maxInFlight, 1);
});

test("an empty pool gives null and starts minting", async () => {
  const { m, pool } = newPool();
  assert.equal(pool.take(), null);
  await settle();
  assert.equal(m.pending, 1);
});

test("no concurrent refills however often asked", async () => {
  const { m, pool } = newPool({ target: 10 });
  for (let i = 0; i < 50; i++) {
    pool.refill();
    pool.take();
    if (i % 5 === 0) await m.ok();
  }
  await settle();
  assert.equal(m.maxInFlight, 1);
  assert.ok(m.pending <= 1);
});

test("backoff doubles after each failure, up to the maximum, and resets on success", async () => {
  const { m, clock, pool } = newPool();
  pool.refill();
  await settle();
  const waits = [];
  for (let i = 0; i < 5; i++) {
    await m.fail(new Error("connection refused"));
    assert.equal(m.pending, 0, "no retry before the backoff");
    assert.equal(pool.lastError, "connection refused");
    const [timer] = clock.timers;
    waits.push(timer.at - clock.now());
    pool.refill();
    pool.take();
    await settle();
    assert.equal(m.pending, 0, "asking again does not skip the wait");
    await clock.advance(waits.at(-1));
    assert.equal(m.pending, 1, "retried after the wait");
  }
  assert.deepEqual(waits, [1000, 2000, 4000, 8000, 8000]);
  await m.ok();
  assert.equal(pool.lastError, "");
  await m.fail(new Error("again"));
  assert.equal(clock.timers[0].at - clock.now(), 1000, "the failure count restarted");
});

test("Retry-After of a 429 is honoured, as seconds or a date", async (t) => {
  for (const [value, wantMs] of [["7", 7000], ["0", 0], [null, 1000]]) {
    await t.test(String(value), async () => {
      const { m, clock, pool } = newPool();
      pool.refill();
      await settle();
      await m.fail(new MintError(429, value ?? ""));
      assert.match(pool.lastError, /429/);
      assert.equal(clock.timers[0].at - clock.now(), wantMs);
      if (wantMs > 0) {
        await clock.advance(wantMs - 1);
        assert.equal(m.pending, 0);
      }
      await clock.advance(1);
      assert.equal(m.pending, 1);
    });
  }
  await t.test("HTTP-date", async () => {
    const { m, clock, pool } = newPool();
    pool.refill();
    await settle();
    await m.fail(new MintError(429, new Date(clock.now() + 90_000).toUTCString()));
    const wait = clock.timers[0].at - clock.now();
    assert.ok(wait > 89_000 && wait <= 90_000, `waits ${wait} ms`); // a date has whole seconds
  });
});

test("retryAfterMs", () => {
  const now = Date.parse("2026-12-03T20:00:00Z");
  assert.equal(retryAfterMs("120", now), 120_000);
  assert.equal(retryAfterMs(" 3 ", now), 3000);
  assert.equal(retryAfterMs("Thu, 03 Dec 2026 20:01:00 GMT", now), 60_000);
  assert.equal(retryAfterMs("Thu, 03 Dec 2026 19:00:00 GMT", now), 0);
  assert.equal(retryAfterMs("", now), null);
  assert.equal(retryAfterMs("soon", now), null);
  assert.equal(retryAfterMs("-5", now), null);
  assert.equal(retryAfterMs(undefined, now), null);
});

test("next waits for the token being minted, or times out", async () => {
  const { m, clock, pool } = newPool();
  const p = pool.next(5000);
  await settle();
  assert.equal(m.pending, 1);
  await m.ok();
  assert.equal(await p, "tok1", "handed straight to the waiter");
  assert.equal(pool.size, 0);
  await m.ok();
  assert.equal(await pool.next(5000), "tok2", "from the pool at once");
  await m.fail(new Error("down"));
  const q = pool.next(5000);
  await clock.advance(5000);
  assert.equal(await q, null);
});

test("stop aborts the mint in flight, drops its token, cancels retries and answers waiters", async () => {
  const { m, clock, pool } = newPool();
  pool.refill();
  await settle();
  const call = m.calls.shift();
  const waiter = pool.next(60_000);
  const done = pool.stop();
  assert.equal(call.signal.aborted, true);
  assert.equal(await waiter, null);
  call.ok();
  await done;
  assert.equal(pool.size, 0, "the late token is dropped");
  assert.equal(clock.pending, 0, "no timer left");
  pool.refill();
  pool.take();
  await settle();
  assert.equal(m.pending, 0, "a stopped pool mints nothing");
  assert.equal(await pool.next(1000), null);
});

test("stop during a backoff cancels the retry", async () => {
  const { m, clock, pool } = newPool();
  pool.refill();
  await settle();
  await m.fail(new MintError(503));
  assert.equal(clock.pending, 1);
  await pool.stop();
  assert.equal(clock.pending, 0);
  await clock.advance(60_000);
  assert.equal(m.pending, 0);
});
