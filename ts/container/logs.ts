/** Reading a container's log as the monitor writes it (k8s-file or json-file), with follow. */
import * as fs from 'node:fs';
import { BurrowError } from '../errors';
import type { Store } from '../storage/store';
import type { ContainerRecord } from './records';
import { containerState } from './state';
import { Containers } from './records';

export interface LogOptions {
  follow: boolean;
  /** Only what is written from now on (`attach`). */
  fromEnd?: boolean;
  tail?: number;
  timestamps: boolean;
  since?: string;
}

interface Entry {
  time: string;
  stream: 'stdout' | 'stderr';
  text: string;
}

export function parseLine(line: string, driver: ContainerRecord['logDriver']): Entry | undefined {
  if (driver === 'json-file') {
    try {
      const j = JSON.parse(line) as { log: string; stream: 'stdout' | 'stderr'; time: string };
      return { time: j.time, stream: j.stream, text: j.log };
    } catch {
      return undefined;
    }
  }
  const m = /^(\S+) (stdout|stderr) ([FP]) (.*)$/s.exec(line);
  if (!m) return undefined;
  return { time: m[1]!, stream: m[2] as 'stdout' | 'stderr', text: m[3] === 'F' ? `${m[4]}\n` : m[4]! };
}

function sinceTime(s: string): number {
  const rel = /^(\d+)(s|m|h)$/.exec(s);
  if (rel) return Date.now() - Number(rel[1]) * { s: 1000, m: 60_000, h: 3_600_000 }[rel[2] as 's' | 'm' | 'h'];
  const t = Date.parse(s);
  if (Number.isNaN(t)) throw new BurrowError('EUSAGE', `--since ${s}: want an RFC 3339 time or a duration like 10m`);
  return t;
}

export async function streamLogs(store: Store, rec: ContainerRecord, o: LogOptions): Promise<void> {
  if (rec.logDriver === 'none') throw new BurrowError('EUSAGE', `container ${rec.name} has the "none" log driver: there are no logs`);
  const since = o.since ? sinceTime(o.since) : undefined;
  const emit = (e: Entry) => {
    if (since !== undefined && Date.parse(e.time) < since) return;
    const out = e.stream === 'stdout' ? process.stdout : process.stderr;
    out.write(o.timestamps ? `${e.time} ${e.text}` : e.text);
  };
  let pos = 0;
  let rest = '';
  const readNew = (tail?: number) => {
    let fd: number;
    try {
      fd = fs.openSync(rec.logPath, 'r');
    } catch {
      return;
    }
    try {
      const size = fs.fstatSync(fd).size;
      if (size <= pos) return;
      const buf = Buffer.alloc(size - pos);
      fs.readSync(fd, buf, 0, buf.length, pos);
      pos = size;
      const text = rest + buf.toString('utf8');
      const lines = text.split('\n');
      rest = lines.pop() ?? '';
      const entries = lines.map((l) => parseLine(l, rec.logDriver)).filter((e): e is Entry => !!e);
      for (const e of tail !== undefined ? entries.slice(Math.max(0, entries.length - tail)) : entries) emit(e);
    } finally {
      fs.closeSync(fd);
    }
  };
  if (o.fromEnd) {
    try {
      pos = fs.statSync(rec.logPath).size;
    } catch {
      /* nothing logged yet */
    }
  } else readNew(o.tail);
  if (!o.follow) return;
  const dir = new Containers(store).dir(rec.id);
  for (;;) {
    // Until the monitor has written the exit record, the last output may still be on its way.
    const st = containerState(rec, dir);
    const running = st.status === 'running' || !!st.pending;
    await new Promise((r) => setTimeout(r, 50));
    readNew();
    if (!running) {
      readNew();
      return;
    }
  }
}
