// "Check the proxy": the self-test that shows the proxy enforces tokens.
// Pure: background.js runs the three probes and hands their outcomes here.

/** The query parameter that marks a probe request, so onRequest can route it exactly. */
export const PROBE_PARAM = "masqued-check";

/**
 * PHASES are the three probes, each on a connection of its own: without a
 * token the proxy must refuse, with a fresh token admit, and with that same
 * token again refuse, since a proxy that takes a replayed token lets tokens
 * be shared.
 */
export const PHASES = Object.freeze([
  { name: "noToken", token: "none", want: "refused" },
  { name: "fresh", token: "fresh", want: "admitted" },
  { name: "replay", token: "same", want: "refused" },
]);

/** probeURL is base with the probe parameter set to id. */
export function probeURL(base, id) {
  const u = new URL(base);
  u.searchParams.set(PROBE_PARAM, id);
  return u.href;
}

/** probeId is the probe parameter of url, or "" when url is no probe. */
export function probeId(url) {
  try {
    return new URL(url).searchParams.get(PROBE_PARAM) ?? "";
  } catch {
    return "";
  }
}

/**
 * verdict builds #check-result's data-result from the outcome of each
 * phase ("refused" or "admitted"): ok when all are as wanted.
 */
export function verdict(outcomes) {
  const r = {};
  let ok = true;
  for (const p of PHASES) {
    r[p.name] = outcomes[p.name];
    ok &&= outcomes[p.name] === p.want;
  }
  r.ok = ok;
  return r;
}

/** describe is the sentence #check-result shows for result r. */
export function describe(r) {
  if (r.ok) {
    return "The proxy enforces tokens: refused without one, admitted with a fresh one, refused when it was replayed.";
  }
  const wrong = [];
  if (r.noToken !== "refused") wrong.push("it admitted a request without a token");
  if (r.fresh !== "admitted") wrong.push("it refused (or could not complete) a request with a fresh token");
  if (r.replay !== "refused") wrong.push("it admitted a replayed token");
  return `Check failed: ${wrong.join("; ")}.`;
}
