// The token pool: tokens minted ahead so that a new proxy connection need
// not wait for the attester. Pure: minting and the clock are injected.

/** The clock of the browser; tests pass one they move by hand. */
export const realClock = Object.freeze({
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h),
});

/**
 * MintError is an attester's refusal, with its status and Retry-After value
 * ("" when absent), so the pool can wait as long as the attester asks.
 */
export class MintError extends Error {
  constructor(status, retryAfter = "") {
    super(`the attester answered ${status}${retryAfter ? ` (retry after ${retryAfter})` : ""}`);
    this.name = "MintError";
    this.status = status;
    this.retryAfter = retryAfter;
  }
}

/**
 * retryAfterMs reads a Retry-After value (delay-seconds or an HTTP-date,
 * RFC 9110 §10.2.3) as milliseconds from nowMs, or null when there is none
 * or it does not parse.
 */
export function retryAfterMs(value, nowMs) {
  const v = String(value ?? "").trim();
  if (/^\d+$/.test(v)) {
    return Number(v) * 1000;
  }
  const t = /^[A-Za-z]{3}, /.test(v) ? Date.parse(v) : NaN; // IMF-fixdate, as RFC 9110 senders must
  return Number.isNaN(t) ? null : Math.max(0, t - nowMs);
}

/**
 * TokenPool keeps up to target tokens. take hands one out and starts a
 * refill; a refill mints one token at a time until the pool is full, and
 * never more than one runs. After a failure it waits before the next
 * attempt: as long as a Retry-After asks, else backoffMs doubling on each
 * failure in a row up to maxBackoffMs. stop ends it all: the mint in
 * flight is aborted and its token, if it still comes, dropped.
 *
 * mint(signal) resolves with a token (an opaque string: the pool never looks
 * inside) or rejects, with a MintError for an attester's refusal.
 */
export class TokenPool {
  constructor({ mint, target = 4, clock = realClock, backoffMs = 1000, maxBackoffMs = 300_000, onChange = () => {} }) {
    this.mint = mint;
    this.target = target;
    this.clock = clock;
    this.backoffMs = backoffMs;
    this.maxBackoffMs = maxBackoffMs;
    this.onChange = onChange;
    this.tokens = [];
    this.waiters = []; // {resolve, timer} of next() calls, oldest first
    this.minted = 0;
    this.lastError = "";
    this.failures = 0; // in a row
    this.running = null; // the refill's promise while one runs
    this.abort = null; // aborts the running refill's mint
    this.retryTimer = null; // set while waiting out a failure
    this.stopped = false;
  }

  get size() {
    return this.tokens.length;
  }

  /** take returns a pooled token or null, and refills. */
  take() {
    const tok = this.tokens.shift() ?? null;
    this.refill();
    this.onChange();
    return tok;
  }

  /**
   * next resolves with a token as soon as there is one, or with null after
   * timeoutMs or at stop: for a connection that had better wait a moment
   * than go out without a token.
   */
  next(timeoutMs) {
    if (this.tokens.length > 0 || this.stopped) {
      return Promise.resolve(this.take());
    }
    return new Promise((resolve) => {
      const w = { resolve, timer: null };
      w.timer = this.clock.setTimeout(() => {
        this.waiters = this.waiters.filter((x) => x !== w);
        resolve(null);
      }, timeoutMs);
      this.waiters.push(w);
      this.refill();
    });
  }

  /** refill starts filling the pool unless it is full, filling, waiting out a failure or stopped. */
  refill() {
    if (this.stopped || this.running !== null || this.retryTimer !== null || !this.wanted()) {
      return;
    }
    const ctl = new AbortController();
    this.abort = ctl;
    this.running = this.fill(ctl.signal).finally(() => {
      this.running = null;
      this.abort = null;
    });
  }

  wanted() {
    return this.tokens.length < this.target || this.waiters.length > 0;
  }

  async fill(signal) {
    while (!this.stopped && this.wanted()) {
      let tok;
      try {
        tok = await this.mint(signal);
      } catch (err) {
        if (this.stopped) {
          return;
        }
        this.failures++;
        this.lastError = err instanceof Error ? err.message : String(err);
        const asked = err instanceof MintError ? retryAfterMs(err.retryAfter, this.clock.now()) : null;
        const delay = asked ?? Math.min(this.maxBackoffMs, this.backoffMs * 2 ** (this.failures - 1));
        this.retryTimer = this.clock.setTimeout(() => {
          this.retryTimer = null;
          this.refill();
        }, delay);
        this.onChange();
        return;
      }
      if (this.stopped) {
        return;
      }
      this.failures = 0;
      this.lastError = "";
      this.minted++;
      const w = this.waiters.shift();
      if (w) {
        this.clock.clearTimeout(w.timer);
        w.resolve(tok);
      } else {
        this.tokens.push(tok);
      }
      this.onChange();
    }
  }

  /**
   * stop drops the tokens, aborts a mint in flight, cancels a pending
   * retry and answers waiters with null. The promise it returns settles
   * when the refill that was running has returned.
   */
  stop() {
    this.stopped = true;
    this.tokens = [];
    this.abort?.abort();
    if (this.retryTimer !== null) {
      this.clock.clearTimeout(this.retryTimer);
      this.retryTimer = null;
    }
    for (const w of this.waiters.splice(0)) {
      this.clock.clearTimeout(w.timer);
      w.resolve(null);
    }
    return this.running ?? Promise.resolve();
  }
}
