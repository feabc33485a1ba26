/**
 * `burrow version`, shaped like `docker version`: the CLI (Client) and the runtime that runs
 * the containers (burrow has no daemon, so no Server; the runtime is what answers for it).
 * Text by default, `--format json`, or a Go-template-like `--format '{{.Client.Version}}'`.
 * `burrow --version` stays the one-line answer bin/burrow.js gives without loading the CLI.
 */
import { versionInfo, type VersionInfo } from '../../engine/version';

/** Go's time.ANSIC, which `docker version` uses for "Built". */
function ansic(iso: string): string {
  if (!iso) return 'unknown';
  const d = new Date(iso);
  const days = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
  const months = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
  const p = (n: number) => String(n).padStart(2, '0');
  return `${days[d.getDay()]} ${months[d.getMonth()]} ${String(d.getDate()).padStart(2, ' ')} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())} ${d.getFullYear()}`;
}

export function renderVersion(v: VersionInfo): string {
  const rows = (title: string, kv: [string, string][]) => `${title}\n${kv.map(([k, val]) => ` ${`${k}:`.padEnd(18)} ${val}\n`).join('')}`;
  const c = v.Client;
  const client = rows('Client:', [
    ['Version', c.Version],
    ['Node version', c.NodeVersion],
    ['Git commit', c.GitCommit],
    ['Built', ansic(c.BuildTime)],
    ['OS/Arch', `${c.Os}/${c.Arch}`],
  ]);
  const rt = v.Runtime;
  const runtime =
    'Error' in rt
      ? rows(`Runtime: ${rt.Name}`, [['Path', rt.Path], ['Error', rt.Error]])
      : rows(`Runtime: ${rt.Name}`, [
          ['Version', rt.Version],
          ['OCI spec', rt.OciVersion],
          ['Built', ansic(rt.BuildTime)],
          ['Path', rt.Path],
        ]);
  return `${client}\n${runtime}`;
}

/** Exit 1 when the runtime cannot be run, as `docker version` does without its daemon. */
export async function versionCommand(opts: { format?: string }): Promise<number> {
  const v = versionInfo();
  if (opts.format === 'json' || opts.format === '{{json .}}') process.stdout.write(`${JSON.stringify(v)}\n`);
  else if (opts.format) {
    const { render } = await import('../format/table');
    process.stdout.write(`${render(opts.format, v as unknown as Record<string, unknown>)}\n`);
  } else process.stdout.write(renderVersion(v));
  if ('Error' in v.Runtime) {
    process.stderr.write(`Error: ${v.Runtime.Error}\n`);
    return 1;
  }
  return 0;
}
