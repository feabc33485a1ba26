/**
 * Servers on the host's loopback for the network tests, each in a process of its own: the test's
 * own event loop is blocked while spawnSync runs the CLI, so a server in it would not answer.
 */
import { spawn } from 'node:child_process';
import { sleep } from './lifecycle.helpers';

export interface HostProcess {
  port: number;
  /** What the server logged: its stdout lines that start with `prefix`, without it. */
  lines(prefix: string): string[];
  stop(): void;
}

/**
 * Runs `node -e code`, which must print `port N` once it listens on N and may log a line per
 * request; resolves once it listens.
 */
export async function hostProcess(code: string): Promise<HostProcess> {
  const child = spawn(process.execPath, ['-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d));
  for (let i = 0; i < 300 && !/port \d+/.test(out); i++) await sleep(10);
  const port = Number(/port (\d+)/.exec(out)?.[1]);
  if (!port) {
    child.kill('SIGKILL');
    throw new Error(`the host server did not start: ${out}`);
  }
  return {
    port,
    lines: (prefix) => out.split('\n').filter((l) => l.startsWith(prefix)).map((l) => l.slice(prefix.length)),
    stop: () => child.kill('SIGKILL'),
  };
}

/**
 * An HTTP server answering `body` on 127.0.0.1 and, with `ipv6`, on ::1 too (one port);
 * `hits()` are the clients' addresses, one per request.
 */
export async function hostServer(body: string, { ipv6 = false } = {}): Promise<{ port: number; hits(): string[]; stop(): void }> {
  const handler = `const http=require('http');const h=(q,r)=>{process.stdout.write('hit '+q.socket.remoteAddress+'\\n');r.end(${JSON.stringify(body)})};`;
  const listen = ipv6
    ? `const a=http.createServer(h);a.listen(0,'::1',()=>{const p=a.address().port;http.createServer(h).listen(p,'127.0.0.1',()=>process.stdout.write('port '+p+'\\n'))});`
    : `const s=http.createServer(h);s.listen(0,'127.0.0.1',()=>process.stdout.write('port '+s.address().port+'\\n'));`;
  const p = await hostProcess(handler + listen);
  return { port: p.port, hits: () => p.lines('hit '), stop: p.stop };
}
