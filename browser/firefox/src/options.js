// The options page. It never sees the account key: the background answers
// with settings without it (and whether one is set), and the key input is
// write-only. All checking is the background's, so the page and the
// toolbar button cannot disagree about what is valid.

const $ = (id) => document.getElementById(id);

/** Form fields by settings name: [element id, kind]. */
const FIELDS = {
  proxy: ["proxy", "text"],
  template: ["template", "text"],
  mode: ["mode", "text"],
  attester: ["attester", "text"],
  directory: ["directory", "text"],
  poolSize: ["pool-size", "number"],
  rotateIdleSeconds: ["rotate-idle", "number"],
  enabled: ["enabled", "checkbox"],
  checkUrl: ["check-url", "text"],
};

function show(s) {
  for (const [name, [id, kind]] of Object.entries(FIELDS)) {
    if (kind === "checkbox") {
      $(id).checked = s[name];
    } else {
      $(id).value = String(s[name]);
    }
  }
  $("account-key").value = "";
  $("key-note").textContent = s.keySet ? "(a key is set)" : "(no key set)";
}

function form() {
  const f = { accountKey: $("account-key").value };
  for (const [name, [id, kind]] of Object.entries(FIELDS)) {
    f[name] = kind === "checkbox" ? $(id).checked : $(id).value;
  }
  return f;
}

function setStatus(state, text) {
  $("status").dataset.state = state;
  $("status").textContent = text;
}

async function save(f) {
  setStatus("saving", "Saving…");
  const r = await browser.runtime.sendMessage({ type: "save", form: f });
  if (r.error) {
    setStatus("error", r.error);
    return;
  }
  show(r.settings);
  setStatus("saved", "Saved");
}

$("form").addEventListener("submit", (e) => {
  e.preventDefault();
  save(form());
});
$("clear-key").addEventListener("click", () => save({ clearKey: true }));

async function poll() {
  const st = await browser.runtime.sendMessage({ type: "status" });
  const t = $("tokens");
  t.dataset.pooled = st.pooled;
  t.dataset.minted = st.minted;
  t.dataset.presented = st.presented;
  t.dataset.groups = st.groups;
  t.dataset.error = st.error;
  t.textContent = st.privacyPass
    ? `Tokens ready: ${st.pooled}; minted: ${st.minted}; presented: ${st.presented}; site connections: ${st.groups}.` +
      (st.error ? ` Last minting error: ${st.error}` : "")
    : `Privacy Pass is off (no account key, attester or directory). Site connections: ${st.groups}.`;
}

$("check").addEventListener("click", async () => {
  const out = $("check-result");
  out.dataset.state = "running";
  delete out.dataset.result;
  out.textContent = "Checking…";
  const r = await browser.runtime.sendMessage({ type: "check", url: $("check-url").value });
  if (r.error) {
    out.dataset.state = "error";
    out.textContent = r.error;
    return;
  }
  out.dataset.result = JSON.stringify(r.result);
  out.dataset.state = "done";
  out.textContent = r.text;
});

browser.runtime.sendMessage({ type: "get" }).then(show);
poll();
setInterval(poll, 400);
