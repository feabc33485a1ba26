/**
 * Attaching to a container from any front end (the API's attach; the CLI keeps its terminal
 * relay in ts/container/attach.ts over the same MonitorConn): the container's output to a
 * callback, the client's input to its stdin, until it exits, the detach keys are typed, or the
 * client goes away (the container keeps running then, as with Docker).
 *
 * A running container held by its monitor is reached through the attach socket. A container
 * that has not started yet (Docker's `run`: create, attach, start, wait) is followed in its log
 * from its first byte once it starts, so that nothing it writes before a socket could connect
 * is lost, and its input goes through the socket as soon as there is one.
 */
import * as fs from 'node:fs';
import type { Readable } from 'node:stream';
import { BurrowError } from '../errors';
import { connectAttach, DetachFilter, MonitorConn, parseDetachKeys } from '../container/attach';
import type { LogStream } from '../container/logs';
import { Containers, type ContainerRecord } from '../container/records';
import { containerState } from '../container/state';
import type { EngineContext } from './context';
import { emitEvent } from './events';

export interface AttachRequest {
  /** Follow the container's output live (else only `logs`). */
  stream: boolean;
  /** Replay its log first. */
  logs: boolean;
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
  /** Docker's detachKeys (`ctrl-p,ctrl-q` when absent); an empty string: the default too. */
  detachKeys?: string;
}

export interface AttachIO {
  /** The client's input; its end closes the container's stdin when the container wants that (StdinOnce). */
  input?: Readable;
  /** Output for the client; a promise holds the container's output back until it has room. */
  output(stream: LogStream, data: Buffer): void | Promise<void>;
  /** Aborted when the client went away. */
  signal: AbortSignal;
}

export type AttachResult = 'exited' | 'detached' | 'gone';

/** Docker's StdinOnce: the first attached client's end of input closes the container's stdin. */
export function stdinOnce(rec: ContainerRecord): boolean {
  return rec.stdinOnce ?? (rec.interactive && !rec.detached);
}

/**
 * Checks what can be attached before any answer is sent. A stopped container can be, as by
 * Docker's daemon (the CLI's `docker attach` refuses it, not the API): the attach then gets its
 * next run's streams (docker-compose 1.29's `run` attaches lazily, after its start, and starts it
 * again when it finds it stopped).
 */
export function checkAttachable(ctx: EngineContext, rec: ContainerRecord, r: AttachRequest): void {
  void ctx;
  void rec;
  if (r.detachKeys) parseDetachKeys(r.detachKeys);
}

export async function attachContainer(ctx: EngineContext, rec: ContainerRecord, r: AttachRequest, io: AttachIO): Promise<AttachResult> {
  const dir = new Containers(ctx.store).dir(rec.id);
  const keys = parseDetachKeys(r.detachKeys || undefined);
  emitEvent(ctx, { Type: 'container', Action: 'attach', Actor: { ID: rec.id, Attributes: { name: rec.name, image: rec.imageName, ...rec.labels } } });
  const want = (s: LogStream) => (s === 'stdout' ? r.stdout : r.stderr) || rec.tty;
  const out = (s: LogStream, d: Buffer) => (want(s) ? io.output(s, d) : undefined);
  const st = containerState(rec, dir);
  const { streamLogs } = await import('../container/logs');
  const replay = async (upTo?: number) => {
    if (rec.logDriver === 'none') return;
    await streamLogs(ctx.store, rec, { follow: false, timestamps: false, signal: io.signal, ...(upTo !== undefined ? { upTo } : {}) }, (s, t) => out(s, Buffer.from(t)));
  };
  if (!r.stream) {
    if (r.logs) await replay();
    return 'exited';
  }
  let conn: MonitorConn | undefined;
  let inputEnded = false;
  const pendingInput: Buffer[] = [];
  const filter = new DetachFilter(keys);
  const detached = new AbortController();
  const sendInput = (d: Buffer) => {
    if (!conn) pendingInput.push(d);
    else if (!conn.input(d) && io.input) {
      io.input.pause();
      conn.sock.once('drain', () => io.input?.resume());
    }
  };
  const onData = (d: Buffer) => {
    const { out: o, detach } = filter.feed(d);
    if (o.length) sendInput(o);
    if (detach) detached.abort();
  };
  const onEnd = () => {
    inputEnded = true;
    if (conn && stdinOnce(rec)) conn.closeStdin();
  };
  const useInput = r.stdin && rec.interactive && io.input;
  if (useInput) {
    io.input!.on('data', onData);
    io.input!.on('end', onEnd);
  }
  /** Connects the socket, hands it the input that waited, and gives its output to `onOutput`. */
  const adopt = (sock: NonNullable<Awaited<ReturnType<typeof connectAttach>>>, onOutput?: (s: LogStream, d: Buffer) => void | Promise<void>, onSeam?: (logBytes: number) => void): MonitorConn => {
    const c = new MonitorConn(sock, {
      ...(onSeam ? { seam: onSeam } : {}),
      output: (s, d) => {
        const p = onOutput?.(s, d);
        if (p) {
          sock.pause();
          void p.finally(() => sock.resume());
        }
      },
    });
    conn = c;
    for (const d of pendingInput.splice(0)) c.input(d);
    if (inputEnded && stdinOnce(rec)) c.closeStdin();
    return c;
  };
  const stop = new AbortController();
  const onAbort = () => stop.abort();
  io.signal.addEventListener('abort', onAbort, { once: true });
  detached.signal.addEventListener('abort', onAbort, { once: true });
  try {
    const sock = st.status === 'running' ? await connectAttach(dir) : undefined;
    if (sock) {
      // Live: the monitor's own stream (low latency, stdout and stderr kept apart).
      // With `logs`, the log first, then the live stream from exactly where the log ends: the
      // monitor answers LOG_SEAM with the log's size at that moment, followed by what is not in
      // the log yet; what came live before the answer is in one or the other, so it is dropped.
      let held: [LogStream, Buffer][] | undefined = r.logs ? [] : undefined;
      let seamSeen = false;
      let onSeam: (n: number | undefined) => void = () => undefined;
      const seam = new Promise<number | undefined>((resolve) => (onSeam = resolve));
      const c = adopt(
        sock,
        (s, d) => {
          if (!held) return out(s, d);
          if (seamSeen) held.push([s, Buffer.from(d)]);
        },
        (n) => {
          seamSeen = true;
          onSeam(n);
        },
      );
      if (held) {
        c.logSeam();
        // A monitor older than LOG_SEAM, or one that closes at once, does not answer.
        const timer = setTimeout(() => onSeam(undefined), 2000);
        sock.once('close', () => onSeam(undefined));
        const upTo = await seam;
        clearTimeout(timer);
        if (upTo === undefined && !seamSeen) {
          // Unanswered: everything the socket gives from now on follows the whole log, as before.
          seamSeen = true;
        }
        await replay(upTo);
        // Live output keeps arriving while the held output is written (each write may wait for
        // the client): it joins the queue until the queue is empty, else it would overtake it.
        for (let next = held.shift(); next; next = held.shift()) await out(next[0], next[1]);
        held = undefined;
      }
      await new Promise<void>((resolve) => {
        if (sock.destroyed) return resolve();
        sock.once('close', () => resolve());
        stop.signal.addEventListener('abort', () => resolve(), { once: true });
      });
      if (!sock.destroyed) c.destroy();
    } else {
      // Not started yet (or held without a socket): its log from the first byte, and a socket
      // for the input once its monitor listens.
      if (rec.logDriver === 'none' && !useInput) throw new BurrowError('EUSAGE', `container ${rec.name} has the "none" log driver and no attach socket yet: nothing to attach to`);
      let connecting = false;
      const tryConnect = async () => {
        if (conn || connecting || !useInput) return;
        connecting = true;
        const s = fs.existsSync(dir) ? await connectAttach(dir) : undefined;
        if (s && !stop.signal.aborted) adopt(s);
        else s?.destroy();
        connecting = false;
      };
      const poll = setInterval(() => void tryConnect(), 50);
      try {
        if (rec.logDriver !== 'none') {
          // Stopped (it has run before): its next run's output, from the log's end as it is now.
          const stopped = st.status === 'exited' && !st.pending && !st.restarting;
          const offset = stopped ? (fs.statSync(rec.logPath, { throwIfNoEntry: false })?.size ?? 0) : 0;
          const from = stopped ? { waitRestart: { startedAt: st.startedAt, offset } } : { waitStart: true };
          await streamLogs(ctx.store, rec, { follow: true, ...from, fromEnd: false, timestamps: false, signal: stop.signal }, (s, t) => out(s, Buffer.from(t)));
        } else {
          await new Promise<void>((resolve) => stop.signal.addEventListener('abort', () => resolve(), { once: true }));
        }
      } finally {
        clearInterval(poll);
        conn?.destroy();
      }
    }
  } finally {
    io.signal.removeEventListener('abort', onAbort);
    if (useInput) {
      io.input!.off('data', onData);
      io.input!.off('end', onEnd);
    }
  }
  if (detached.signal.aborted) return 'detached';
  return io.signal.aborted ? 'gone' : 'exited';
}
