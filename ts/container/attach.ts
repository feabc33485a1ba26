/**
 * Attaching to a container that burrow-runtime's monitor holds, through its attach socket
 * (protocol: crates/burrow-runtime/src/commands/attach_server.rs): `burrow attach`, and `run`
 * or `start -a` of a container with a terminal, which run it under the monitor so that the
 * detach keys can leave it running. Our stdin goes to the container (the terminal in raw mode,
 * restored on every way out), its output to our stdout and stderr, and our window size follows
 * SIGWINCH. Containers without a socket (held by a foreground `run`) are followed in their log.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { BurrowError, EXIT } from '../errors';
import type { Store } from '../storage/store';
import { startDetached, stateOf, waitStopped } from './lifecycle';
import { Containers, type ContainerRecord } from './records';

// Frame kinds, client to monitor and monitor to client.
const DATA = 1;
const RESIZE = 2;
const CLOSE_STDIN = 3;
const LOG_SEAM = 4;
const STDOUT = 1;
const STDERR = 2;
const EXIT_STATUS = 3;
const SEAM = 4;

export const DEFAULT_DETACH_KEYS = 'ctrl-p,ctrl-q';
/** What Docker's client says when the detach keys end an attach. */
export const DETACH_MESSAGE = 'read escape sequence';

/**
 * Docker's `--detach-keys`: comma-separated keys, each one character or `ctrl-X` with X one of
 * a-z @ [ \ ] ^ _ (`ctrl-p,ctrl-q`, `ctrl-a,x`). Empty means the default, as in Docker's CLI.
 */
export function parseDetachKeys(spec: string | undefined): Buffer {
  const s = spec === undefined || spec === '' ? DEFAULT_DETACH_KEYS : spec;
  const codes: number[] = [];
  for (const key of s.split(',')) {
    if (key.length === 1) {
      codes.push(key.charCodeAt(0));
      continue;
    }
    const m = /^ctrl-(.)$/i.exec(key);
    const c = m ? m[1]!.toLowerCase() : '';
    const i = '@abcdefghijklmnopqrstuvwxyz[\\]^_'.indexOf(c);
    if (!m || i < 0) throw new BurrowError('EUSAGE', `Invalid detach keys (${s}) provided: unknown key '${key}'`, 'keys are single characters or ctrl-X with X in a-z, @, [, \\, ], ^, _; e.g. ctrl-p,ctrl-q');
    codes.push(i);
  }
  return Buffer.from(codes);
}

/**
 * Finds the detach sequence in a stream of input. Bytes that may begin it are held back until
 * the next byte tells; held bytes that turn out not to be it are passed on, as Docker does.
 */
export class DetachFilter {
  private held = 0;
  constructor(private readonly keys: Buffer) {}

  /** What to send on, and whether the sequence was completed (later bytes are dropped). */
  feed(data: Buffer): { out: Buffer; detach: boolean } {
    const out: number[] = [];
    for (const b of data) {
      if (this.keys.length && b === this.keys[this.held]) {
        this.held++;
        if (this.held === this.keys.length) return { out: Buffer.from(out), detach: true };
        continue;
      }
      for (let i = 0; i < this.held; i++) out.push(this.keys[i]!);
      this.held = 0;
      if (this.keys.length && b === this.keys[0]) this.held = 1;
      else out.push(b);
    }
    return { out: Buffer.from(out), detach: false };
  }
}

export interface TermSize {
  rows: number;
  cols: number;
}

/** The size of the terminal we print on, if we print on one (as Docker takes it, from stdout). */
export function terminalSize(): TermSize | undefined {
  const s = process.stdout.isTTY ? process.stdout : process.stderr.isTTY ? process.stderr : undefined;
  if (!s) return undefined;
  try {
    const [cols, rows] = s.getWindowSize();
    return rows && cols ? { rows, cols } : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Connects to D/attach.sock; undefined when no monitor listens there. A unix socket path holds
 * 108 bytes: a longer one is reached through a descriptor of its directory.
 */
export function connectAttach(dir: string): Promise<net.Socket | undefined> {
  const full = path.join(dir, 'attach.sock');
  if (!fs.existsSync(full)) return Promise.resolve(undefined);
  let dirFd: number | undefined;
  let target = full;
  if (Buffer.byteLength(full) >= 100) {
    try {
      dirFd = fs.openSync(dir, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
    } catch {
      return Promise.resolve(undefined);
    }
    target = `/proc/self/fd/${dirFd}/attach.sock`;
  }
  return new Promise((resolve) => {
    const done = (s: net.Socket | undefined) => {
      if (dirFd !== undefined) fs.closeSync(dirFd);
      dirFd = undefined;
      resolve(s);
    };
    const sock = net.createConnection(target);
    sock.once('connect', () => {
      sock.removeAllListeners('error');
      done(sock);
    });
    // ECONNREFUSED: a socket left by a monitor that died.
    sock.once('error', () => done(undefined));
  });
}

export interface StreamOptions {
  /** Relay our stdin (the container has one open: -i). */
  stdin: boolean;
  /** The container has a terminal: raw mode for ours, window size. */
  tty: boolean;
  detachKeys: Buffer;
  /** Our end of input closes the container's stdin (Docker's StdinOnce: `start -ai`, `run -i`). */
  closeStdin: boolean;
  /** Signals we get go to the container (`--sig-proxy`, only without a terminal). */
  proxy?: (sig: NodeJS.Signals) => void;
}

export type AttachEnd = { how: 'exited'; exitCode?: number } | { how: 'detached' } | { how: 'signal'; signal: NodeJS.Signals };

/**
 * Our terminal in raw mode, and back. Through stty(1) rather than Node's setRawMode: libuv's raw
 * mode keeps output processing (ONLCR), so every "\r\n" from the container's terminal would
 * reach the screen as "\r\r\n"; stty's `raw` is cfmakeraw's, as runc's and Docker's clients use.
 * Saved as `stty -g` prints it and restored exactly.
 */
class RawTerminal {
  private saved: string | undefined;

  enter(): void {
    const g = spawnSync('stty', ['-g'], { stdio: [0, 'pipe', 'ignore'], encoding: 'utf8' });
    if (g.status !== 0 || !g.stdout.trim()) return;
    this.saved = g.stdout.trim();
    spawnSync('stty', ['raw', '-echo'], { stdio: [0, 'ignore', 'ignore'] });
  }

  restore(): void {
    if (this.saved === undefined) return;
    spawnSync('stty', [this.saved], { stdio: [0, 'ignore', 'ignore'] });
    this.saved = undefined;
  }
}

const SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2'];

function frame(kind: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(5);
  h[0] = kind;
  h.writeUInt32BE(payload.length, 1);
  return Buffer.concat([h, payload]);
}

/** What the monitor sends a client: output, then the status, then it closes. */
export interface MonitorHandlers {
  output(stream: 'stdout' | 'stderr', data: Buffer): void;
  exit?(code: number): void;
  /**
   * The answer to `logSeam()`: the log's size in bytes when the monitor answered; the output
   * before it is in the log up to that size or follows at once (its partial lines).
   */
  seam?(logBytes: number): void;
}

/**
 * One client connection to a container's monitor (the attach socket), for any front end: the
 * CLI's relay below, the API's attach and resize (ts/engine/attach.ts). Frames are parsed as
 * they come; `close` fires once, when the monitor is done or the connection drops.
 */
export class MonitorConn {
  exitCode: number | undefined;
  private buf: Buffer = Buffer.alloc(0);

  constructor(
    readonly sock: net.Socket,
    h: MonitorHandlers,
  ) {
    sock.on('data', (d: Buffer) => {
      this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : d;
      while (this.buf.length >= 5) {
        const len = this.buf.readUInt32BE(1);
        if (this.buf.length < 5 + len) break;
        const payload = this.buf.subarray(5, 5 + len);
        if (this.buf[0] === STDOUT) h.output('stdout', payload);
        else if (this.buf[0] === STDERR) h.output('stderr', payload);
        else if (this.buf[0] === EXIT_STATUS && len >= 4) {
          this.exitCode = payload.readInt32BE(0);
          h.exit?.(this.exitCode);
        } else if (this.buf[0] === SEAM && len >= 8) h.seam?.(Number(payload.readBigUInt64BE(0)));
        this.buf = this.buf.subarray(5 + len);
      }
    });
    sock.on('error', () => undefined); // 'close' follows
  }

  private send(kind: number, payload: Buffer): boolean {
    if (this.sock.destroyed || !this.sock.writable) return true;
    return this.sock.write(frame(kind, payload));
  }

  /** Input for the container's terminal or stdin; false: wait for the socket's 'drain'. */
  input(data: Buffer): boolean {
    return this.send(DATA, data);
  }

  /** The terminal's new size (TIOCSWINSZ on the master, SIGWINCH to the foreground). */
  resize(rows: number, cols: number): void {
    const b = Buffer.alloc(4);
    b.writeUInt16BE(rows, 0);
    b.writeUInt16BE(cols, 2);
    this.send(RESIZE, b);
  }

  /** Asks where the log meets this connection's live output (answered through `seam`). */
  logSeam(): void {
    this.send(LOG_SEAM, Buffer.alloc(0));
  }

  /** Closes the container's stdin once what came before is written. */
  closeStdin(): void {
    this.send(CLOSE_STDIN, Buffer.alloc(0));
  }

  destroy(): void {
    this.sock.destroy();
  }
}

/**
 * Resizes the terminal of a container its monitor holds (the API's resize): false when nothing
 * holds it (not running, or run by a foreground `run` without a socket).
 */
export async function resizeTerminal(dir: string, rows: number, cols: number): Promise<boolean> {
  const sock = await connectAttach(dir);
  if (!sock) return false;
  const c = new MonitorConn(sock, { output: () => undefined });
  c.resize(rows, cols);
  // Half-closed: the monitor reads the frame, then sees the end and drops us.
  await new Promise<void>((resolve) => {
    sock.once('close', () => resolve());
    sock.end();
    setTimeout(() => (sock.destroy(), resolve()), 2000).unref();
  });
  return true;
}

/**
 * Relays between us and the container until it exits (the monitor sends the status and closes),
 * the detach keys are typed, or a signal that is not passed on ends us.
 */
export function relay(sock: net.Socket, o: StreamOptions): Promise<AttachEnd> {
  const input = process.stdin;
  const term = new RawTerminal();
  const restore = () => term.restore();
  // The last resort: whatever ends the process leaves the terminal as it found it.
  process.on('exit', restore);
  if (o.stdin && o.tty && input.isTTY) term.enter();
  const conn = new MonitorConn(sock, { output: (stream, data) => (stream === 'stdout' ? process.stdout : process.stderr).write(data) });
  const resize = () => {
    const s = terminalSize();
    if (s) conn.resize(s.rows, s.cols);
  };
  return new Promise((resolve) => {
    let end: AttachEnd | undefined;
    const filter = new DetachFilter(o.detachKeys);
    const finish = (e: AttachEnd) => {
      if (end) return;
      end = e;
      if (o.tty) process.off('SIGWINCH', resize);
      for (const s of SIGNALS) process.off(s, onSignal);
      if (o.stdin) {
        input.off('data', onData);
        input.off('end', onEnd);
        input.pause();
      }
      restore();
      process.off('exit', restore);
      sock.destroy();
      resolve(e);
    };
    const onSignal = (sig: NodeJS.Signals) => {
      if (o.proxy) o.proxy(sig);
      else finish({ how: 'signal', signal: sig });
    };
    const onData = (d: Buffer) => {
      const { out, detach } = filter.feed(d);
      if (out.length && !conn.input(out)) {
        input.pause();
        sock.once('drain', () => end || input.resume());
      }
      if (detach) finish({ how: 'detached' });
    };
    const onEnd = () => {
      if (o.closeStdin) conn.closeStdin();
    };
    // The monitor closes when it is done with the container (after its exit command).
    sock.on('close', () => finish(conn.exitCode === undefined ? { how: 'exited' } : { how: 'exited', exitCode: conn.exitCode }));
    // With a terminal, signals are not passed on (as Docker's sig-proxy): one that reaches us
    // ends the attach and leaves the container running.
    for (const s of SIGNALS) process.on(s, onSignal);
    if (o.tty) {
      process.on('SIGWINCH', resize);
      resize();
    }
    if (o.stdin) {
      input.on('data', onData);
      input.on('end', onEnd);
      input.resume();
    }
  });
}

/** Docker's status for how an attach ended; the message for a detach goes to stderr. */
async function statusOf(store: Store, rec: ContainerRecord, e: AttachEnd): Promise<number> {
  if (e.how === 'detached') {
    process.stderr.write(`${DETACH_MESSAGE}\n`);
    return 0;
  }
  if (e.how === 'signal') return 128 + (os.constants.signals[e.signal] ?? 0);
  if (e.exitCode !== undefined) return e.exitCode;
  // The monitor went away without a status (killed): what the records say, if they still exist.
  if (!fs.existsSync(new Containers(store).dir(rec.id))) return EXIT.ENGINE;
  await waitStopped(store, rec, 5000);
  const st = stateOf(store, rec);
  return st.status === 'running' ? EXIT.ENGINE : st.exitCode;
}

export interface AttachFlags {
  /** Attach our stdin (when the container keeps one open). */
  stdin: boolean;
  detachKeys?: string;
  /** Pass our signals on to a container without a terminal. */
  sigProxy: boolean;
  signal: (sig: NodeJS.Signals) => void;
}

/**
 * `burrow attach`: resolves with Docker's status (the container's, 0 after a detach). A
 * container without an attach socket is followed in its log (new output only), its status
 * taken from the records.
 */
export async function attachTo(store: Store, rec: ContainerRecord, f: AttachFlags): Promise<number> {
  const keys = parseDetachKeys(f.detachKeys);
  const proxy = f.sigProxy && !rec.tty ? f.signal : undefined;
  const sock = await connectAttach(new Containers(store).dir(rec.id));
  if (sock) return statusOf(store, rec, await relay(sock, { stdin: f.stdin && rec.interactive, tty: rec.tty, detachKeys: keys, closeStdin: false, ...(proxy ? { proxy } : {}) }));
  const { streamLogs } = await import('./logs');
  if (proxy) for (const s of SIGNALS) process.on(s, proxy);
  try {
    await streamLogs(store, rec, { follow: true, fromEnd: true, timestamps: false });
  } finally {
    if (proxy) for (const s of SIGNALS) process.off(s, proxy);
  }
  await waitStopped(store, rec, 5000);
  return stateOf(store, rec).exitCode;
}

/**
 * `run -t` and `start -a` of a container with a terminal: started under the monitor with our
 * terminal's size and a connected socket as its first client, so that nothing of the first
 * output is missed and the detach keys leave it running (its `--rm` is then the monitor's exit
 * command, as for `run -d --rm`). Resolves with Docker's status.
 */
export async function runAttached(store: Store, rec: ContainerRecord, cleanupArgs: string[] | undefined, detachKeys?: string): Promise<number> {
  const keys = parseDetachKeys(detachKeys);
  const size = terminalSize();
  const sock = await startDetached(store, rec, cleanupArgs, { attach: true, ...(size ? { ttySize: size } : {}) });
  if (!sock) throw new BurrowError('ERUNTIME', 'the monitor gave no attach socket');
  return statusOf(store, rec, await relay(sock, { stdin: rec.interactive, tty: rec.tty, detachKeys: keys, closeStdin: true }));
}
