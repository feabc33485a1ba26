/** Human rendering of the host report: one line per finding, the fix indented under it. */
import type { Check, HostReport, Verdict } from '../../host/report';

const SECTION_TITLES: Record<string, string> = {
  kernel: 'Kernel',
  userns: 'User namespaces',
  idmap: 'Identity',
  storage: 'Storage',
  network: 'Networking',
  cgroups: 'cgroups',
  runtime: 'Runtime binaries',
  'runtime-dir': 'Runtime directory',
};

const MARK: Record<Verdict, string> = { ok: ' ok ', info: 'info', warn: 'WARN', fail: 'FAIL' };
const COLOUR: Record<Verdict, string> = { ok: '\x1b[32m', info: '\x1b[36m', warn: '\x1b[33m', fail: '\x1b[31m' };

function section(c: Check): string {
  const head = c.id.split('.')[0] ?? c.id;
  return SECTION_TITLES[head] ?? head;
}

export function renderInfo(r: HostReport, colour: boolean): string {
  const out: string[] = [];
  const who = r.idmap.user ? `${r.idmap.user} (uid ${r.uid})` : `uid ${r.uid}`;
  out.push(`Host probe for ${who}, ${r.rootless ? 'rootless' : 'running as root'}`);
  let current = '';
  const width = Math.max(...r.checks.map((c) => c.title.length));
  for (const c of r.checks) {
    const s = section(c);
    if (s !== current) {
      out.push('', s);
      current = s;
    }
    const mark = colour ? `${COLOUR[c.verdict]}${MARK[c.verdict]}\x1b[0m` : MARK[c.verdict];
    out.push(`  [${mark}] ${c.title.padEnd(width)}  ${c.evidence}`);
    if (c.fix) out.push(`         ${' '.repeat(width)}  fix: ${c.fix}`);
  }
  out.push('');
  const limits = r.cgroups.enforceable.filter((l) => l !== 'hugetlb');
  const summary =
    `id-map ${r.idmap.mode}, storage ${r.storage.driver}, network ${r.network.defaultMode}, ` +
    `limits ${limits.length ? limits.join(' ') : 'none enforceable'}`;
  out.push(
    r.canRunContainers
      ? `Containers can run here (${summary}).`
      : 'Containers cannot run here: see the FAIL lines above.',
  );
  return out.join('\n') + '\n';
}
