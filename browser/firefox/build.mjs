// npm run build: dist/ is the unpacked extension (load dist/manifest.json in
// about:debugging) and dist/masqued-for-firefox.xpi the same zipped, with
// the manifest at the root. esbuild bundles @cloudflare/privacypass-ts into
// background.js; nothing is fetched at build time.

import { build } from "esbuild";
import { zipSync } from "fflate";
import { cpSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";

const root = import.meta.dirname;
const dist = join(root, "dist");
const xpi = "masqued-for-firefox.xpi";

rmSync(dist, { recursive: true, force: true });
mkdirSync(dist);
await build({
  entryPoints: [join(root, "src/background.js"), join(root, "src/options.js")],
  outdir: dist,
  bundle: true,
  format: "iife",
  target: "firefox128",
  legalComments: "inline",
  logLevel: "warning",
});
cpSync(join(root, "manifest.json"), join(dist, "manifest.json"));
cpSync(join(root, "src/options.html"), join(dist, "options.html"));
cpSync(join(root, "icons"), join(dist, "icons"), { recursive: true });

function files(dir) {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? files(p) : [p];
  });
}

// A fixed date keeps the XPI the same bytes for the same sources.
const mtime = new Date("2026-01-01T00:00:00Z");
const entries = {};
for (const f of files(dist).sort()) {
  entries[relative(dist, f).split("\\").join("/")] = [readFileSync(f), { mtime }];
}
writeFileSync(join(dist, xpi), zipSync(entries, { level: 9 }));
console.log(`built ${relative(process.cwd(), dist)}/ and ${relative(process.cwd(), join(dist, xpi))} (${Object.keys(entries).length} files)`);
