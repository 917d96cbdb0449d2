// Test helpers: a clock moved by hand, so that no test waits for time to pass.

/** FakeClock has the shape of pool.js's realClock; advance runs the timers that come due. */
export class FakeClock {
  constructor(t = 1_000_000) {
    this.t = t;
    this.timers = [];
  }
  now = () => this.t;
  setTimeout = (fn, ms) => {
    const h = { at: this.t + ms, fn };
    this.timers.push(h);
    return h;
  };
  clearTimeout = (h) => {
    this.timers = this.timers.filter((x) => x !== h);
  };
  /** pending is how many timers are set. */
  get pending() {
    return this.timers.length;
  }
  async advance(ms) {
    const end = this.t + ms;
    for (;;) {
      const due = this.timers.filter((h) => h.at <= end).sort((a, b) => a.at - b.at)[0];
      if (!due) break;
      this.clearTimeout(due);
      this.t = due.at;
      due.fn();
      await settle();
    }
    this.t = end;
  }
}

/** settle lets pending promise callbacks run (event-loop turns, not time). */
export async function settle() {
  for (let i = 0; i < 20; i++) {
    await new Promise((r) => setImmediate(r));
  }
}
