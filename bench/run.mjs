#!/usr/bin/env node
// `npm run bench`: runs every bench/*.bench.mjs (or those named on the command line), burrow and
// its peers side by side in one run, and writes bench/RESULTS.md. Not part of the tests:
// timings are reported, never asserted.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ROOT } from './lib.mjs';

const dir = path.join(ROOT, 'bench');
const only = process.argv.slice(2);
const files = fs.readdirSync(dir).filter((f) => f.endsWith('.bench.mjs')).filter((f) => !only.length || only.some((o) => f.startsWith(o))).sort();
const out = path.join(dir, 'RESULTS.md');
const sections = new Map();
for (const f of files) {
  const mod = await import(path.join(dir, f));
  // A file exports `title` and `run`, or `sections` ([{ title, run }]): one section of RESULTS.md each.
  for (const sec of mod.sections ?? [{ title: mod.title, run: mod.run }]) {
    process.stderr.write(`\n## ${sec.title} (${f})\n`);
    let body;
    try {
      body = await sec.run();
    } catch (err) {
      // One failing benchmark must not lose the others' results.
      body = `**failed:** ${String(err.message ?? err).split('\n')[0]}\n`;
      process.stderr.write(`${f} failed: ${err.stack ?? err}\n`);
    }
    sections.set(`## ${sec.title}`, `## ${sec.title}\n\n_${new Date().toISOString().slice(0, 16)}Z_\n\n${body}`);
  }
}
// Sections of RESULTS.md are kept when only some benchmarks are run: read now, at the end, so
// that a section written meanwhile (another bench run, a merge) is not lost.
if (only.length && fs.existsSync(out)) {
  const fresh = new Map(sections);
  sections.clear();
  for (const part of fs.readFileSync(out, 'utf8').split(/^(?=## )/m).slice(1)) sections.set(part.split('\n')[0], part.trimEnd() + '\n');
  for (const [k, v] of fresh) sections.set(k, v);
}
const cpu = (os.cpus()[0]?.model ?? 'unknown cpu').trim();
const head = `# Benchmark results\n\nWritten by \`npm run bench\` on ${new Date().toISOString().slice(0, 10)}: ${os.cpus().length} × ${cpu}, kernel ${os.release()}, Node ${process.version}. Medians from hyperfine; ratios are to burrow (below 1× means the peer is faster). Peers run rootless as the same unprivileged user.\n\n`;
fs.writeFileSync(out, head + [...sections.values()].join('\n'));
process.stdout.write(fs.readFileSync(out, 'utf8'));
