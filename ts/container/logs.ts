/**
 * Reading a container's log as the monitor writes it (k8s-file or json-file), with follow. The
 * entries go to a sink the caller gives: the CLI's writes to its stdout and stderr, the API's
 * frames them onto an HTTP response (ts/api/routes/streams.ts).
 */
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
  /** Only entries up to this time (Docker's `until`); a follow ends once it has passed. */
  until?: string;
  /** Which streams to give (both when absent). */
  stdout?: boolean;
  stderr?: boolean;
  /** Following a container that has not started yet waits for its start (attach before start). */
  waitStart?: boolean;
  /**
   * Following a stopped container waits for its next start, then gives what that run writes
   * from this log offset on (the Engine API's attach to a stopped container, as Docker's daemon:
   * its streams are those of the next run).
   */
  waitRestart?: { startedAt: string | undefined; offset: number };
  /** Only the log's first bytes, up to this size (attach with logs: where the live stream begins). */
  upTo?: number;
  /** Ends a follow early (the API's client went away). */
  signal?: AbortSignal;
  /** Called when everything written so far was given to the sink (a batching sink sends now). */
  flush?: () => void | Promise<void>;
}

export type LogStream = 'stdout' | 'stderr';

interface Entry {
  time: string;
  stream: LogStream;
  text: string;
}

/**
 * Where the entries go; a promise holds the reading back until the receiver has room (a slow
 * HTTP client does not make the whole log pile up in memory).
 */
export type LogSink = (stream: LogStream, text: string) => void | Promise<void>;

/** The CLI's sink: the container's stdout to ours, its stderr to ours. */
export const stdioSink: LogSink = (stream, text) => {
  (stream === 'stdout' ? process.stdout : process.stderr).write(text);
};

export function parseLine(line: string, driver: ContainerRecord['logDriver']): Entry | undefined {
  if (driver === 'json-file') {
    try {
      const j = JSON.parse(line) as { log: string; stream: LogStream; time: string };
      return { time: j.time, stream: j.stream, text: j.log };
    } catch {
      return undefined;
    }
  }
  const m = /^(\S+) (stdout|stderr) ([FP]) (.*)$/s.exec(line);
  if (!m) return undefined;
  return { time: m[1]!, stream: m[2] as LogStream, text: m[3] === 'F' ? `${m[4]}\n` : m[4]! };
}

/** An RFC 3339 time, a duration before now (`10m`), or Unix seconds (`1700000000.5`, as Docker's API sends). */
export function logTime(s: string, flag = '--since'): number {
  const rel = /^(\d+)(s|m|h)$/.exec(s);
  if (rel) return Date.now() - Number(rel[1]) * { s: 1000, m: 60_000, h: 3_600_000 }[rel[2] as 's' | 'm' | 'h'];
  if (/^\d+(\.\d+)?$/.test(s)) return Number(s) * 1000;
  const t = Date.parse(s);
  if (Number.isNaN(t)) throw new BurrowError('EUSAGE', `${flag} ${s}: want an RFC 3339 time, Unix seconds or a duration like 10m`);
  return t;
}

const CHUNK = 1 << 20;

export async function streamLogs(store: Store, rec: ContainerRecord, o: LogOptions, sink: LogSink = stdioSink): Promise<void> {
  if (rec.logDriver === 'none') throw new BurrowError('EUSAGE', `container ${rec.name} has the "none" log driver: there are no logs`);
  const since = o.since ? logTime(o.since) : undefined;
  const until = o.until ? logTime(o.until, '--until') : undefined;
  const want = (s: LogStream) => (s === 'stdout' ? o.stdout !== false : o.stderr !== false);
  const emit = async (e: Entry) => {
    if (!want(e.stream)) return;
    if (since !== undefined || until !== undefined) {
      const t = Date.parse(e.time);
      if (since !== undefined && t < since) return;
      if (until !== undefined && t > until) return;
    }
    const r = sink(e.stream, o.timestamps ? `${e.time} ${e.text}` : e.text);
    if (r) await r;
  };
  // One descriptor for the whole read: a `--rm` container's log stays readable to the end after
  // its exit command removed it.
  let fd: number | undefined;
  let pos = 0;
  let rest: Buffer = Buffer.alloc(0);
  const buf = Buffer.alloc(CHUNK);
  const open = () => {
    if (fd !== undefined) return true;
    try {
      fd = fs.openSync(rec.logPath, 'r');
      return true;
    } catch {
      return false;
    }
  };
  /** Reads what was added since the last call; with `tail`, only the last entries are given. */
  const readNew = async (tail?: number) => {
    if (!open()) return;
    const kept: Entry[] = [];
    for (;;) {
      const n = fs.readSync(fd!, buf, 0, o.upTo === undefined ? CHUNK : Math.max(0, Math.min(CHUNK, o.upTo - pos)), pos);
      if (n === 0) break;
      pos += n;
      const data = rest.length ? Buffer.concat([rest, buf.subarray(0, n)]) : buf.subarray(0, n);
      const nl = data.lastIndexOf(10);
      if (nl < 0) {
        rest = Buffer.from(data);
        continue;
      }
      rest = Buffer.from(data.subarray(nl + 1));
      for (const l of data.subarray(0, nl).toString('utf8').split('\n')) {
        const e = parseLine(l, rec.logDriver);
        if (!e) continue;
        if (tail === undefined) await emit(e);
        else {
          kept.push(e);
          if (kept.length > 2 * tail + 1024) kept.splice(0, kept.length - tail);
        }
      }
      if (o.signal?.aborted) return;
    }
    if (tail !== undefined) for (const e of kept.slice(Math.max(0, kept.length - tail))) await emit(e);
    await o.flush?.();
  };
  const dir = new Containers(store).dir(rec.id);
  const sleep = () => new Promise((r) => setTimeout(r, 50));
  try {
    if (o.waitStart && o.follow) {
      // Attached before its start (docker run: create, attach, start): everything it writes.
      // The log is opened as soon as it exists (its monitor makes it before the start): a `--rm`
      // container may run, exit and be removed between two looks at its state, and an open
      // descriptor still reads what it wrote.
      while (!o.signal?.aborted && fs.existsSync(dir) && containerState(rec, dir).status === 'created') {
        open();
        await new Promise((r) => setTimeout(r, 10));
      }
      open();
    }
    if (o.waitRestart && o.follow) {
      const before = o.waitRestart.startedAt;
      for (;;) {
        if (o.signal?.aborted || !fs.existsSync(dir)) return;
        const st = containerState(rec, dir);
        if (st.startedAt !== before && (st.status === 'running' || st.status === 'exited')) break;
        await sleep();
      }
      if (open()) pos = o.waitRestart.offset;
    } else if (o.fromEnd) {
      if (open()) pos = fs.fstatSync(fd!).size;
    } else await readNew(o.tail);
    if (!o.follow) return;
    for (;;) {
      if (o.signal?.aborted) return;
      if (until !== undefined && Date.now() > until) return;
      // Until the monitor has written the exit record, the last output may still be on its way.
      const st = fs.existsSync(dir) ? containerState(rec, dir) : undefined;
      const running = !!st && (st.status === 'running' || !!st.pending);
      await sleep();
      await readNew();
      if (!running) {
        await readNew();
        return;
      }
    }
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}
