/**
 * Pull and push progress, on stderr.
 *
 * At a terminal (stdout and stderr both, and TERM not dumb): one line per layer, redrawn in place
 * with its state, bytes and speed, then a total line. The block is redrawn from its first line
 * (cursor up, then carriage return and erase-line before each line), each line cut to the
 * terminal's width so that none wraps and the cursor-up count stays true. When the transfer ends
 * the block is drawn once more, with every layer's final state, and left on the screen: later
 * lines (the digest) go below it and it is never drawn again. Anything else written to stderr
 * meanwhile (the unpacker's warnings, a message of the caller) goes above the block, which is
 * erased first and redrawn below it: no redraw overwrites a warning.
 *
 * Elsewhere (a pipe, a file): a plain log, one line per event, no escape codes. Nothing with
 * --quiet.
 */
import { humanSize } from '../cli/format/table';

export type Mode = 'tty' | 'plain' | 'quiet';

/** The display for a pull or push: redrawn only when the user looks at a terminal. */
export function progressMode(quiet: boolean): Mode {
  if (quiet) return 'quiet';
  return process.stdout.isTTY && process.stderr.isTTY && process.env.TERM !== 'dumb' ? 'tty' : 'plain';
}

interface Item {
  done: number;
  total: number;
  status: string;
  started: number;
}

type Write = NodeJS.WriteStream['write'];

const REDRAW_MS = 100;

export class Progress {
  private readonly items = new Map<string, Item>();
  /** Lines of the block on the screen, the cursor at the start of the line below them. */
  private drawn = 0;
  private last = 0;
  private finished = false;
  /** stderr's own write, while ours is in place (tty mode). */
  private write: Write | undefined;

  constructor(
    private readonly mode: Mode,
    private readonly out: NodeJS.WriteStream = process.stderr,
  ) {
    if (mode === 'tty') this.interpose();
  }

  /**
   * Other writes to stderr during the transfer go above the block: erase it, let the write
   * through, draw the block again below.
   */
  private interpose(): void {
    const out = this.out;
    // Unbound on purpose: it is only called with `out` as `this` (apply, call), and finish() puts
    // back this very function, not a bound copy of it.
    // eslint-disable-next-line @typescript-eslint/unbound-method
    const write = out.write;
    this.write = write;
    out.write = ((...args: Parameters<Write>) => {
      this.erase();
      const r = write.apply(out, args);
      if (this.items.size) this.draw();
      return r;
    }) as Write;
  }

  private emit(text: string): void {
    if (this.write) this.write.call(this.out, text);
    else this.out.write(text);
  }

  /** A line of its own (a message), above the block while the transfer runs. */
  line(text: string): void {
    if (this.mode === 'quiet') return;
    if (this.mode === 'plain' || this.finished) {
      this.emit(`${text}\n`);
      return;
    }
    this.erase();
    this.emit(`${text}\n`);
    if (this.items.size) this.draw();
  }

  /** A layer that will be transferred: listed at once (in the image's order), before its turn. */
  pending(digest: string, status = 'Waiting'): void {
    if (!this.items.has(digest)) this.items.set(digest, { done: 0, total: 0, status, started: 0 });
  }

  update(digest: string, done: number, total: number): void {
    const it = this.items.get(digest) ?? { done: 0, total, status: 'Downloading', started: 0 };
    if (!it.started) {
      it.started = Date.now();
      it.status = 'Downloading';
    }
    it.done = done;
    it.total = total;
    this.items.set(digest, it);
    if (this.mode === 'tty' && !this.finished && Date.now() - this.last > REDRAW_MS) this.draw();
  }

  done(digest: string, status: string): void {
    const it = this.items.get(digest) ?? { done: 0, total: 0, status, started: Date.now() };
    it.status = status;
    if (it.total) it.done = it.total;
    this.items.set(digest, it);
    if (this.mode === 'plain') this.emit(`${digest.slice(7, 19)}: ${status}\n`);
    if (this.mode === 'tty' && !this.finished) this.draw();
  }

  private erase(): void {
    if (!this.drawn) return;
    this.emit(`\x1b[${this.drawn}A\r\x1b[J`);
    this.drawn = 0;
  }

  private lines(): string[] {
    const now = Date.now();
    const lines: string[] = [];
    let done = 0;
    let total = 0;
    for (const [d, it] of this.items) {
      done += it.done;
      total += it.total;
      const secs = Math.max(0.001, (now - it.started) / 1000);
      const bytes = it.status === 'Downloading' && it.total ? ` ${humanSize(it.done)}/${humanSize(it.total)} ${humanSize(it.done / secs)}/s` : '';
      lines.push(`${d.slice(7, 19)}: ${it.status}${bytes}`);
    }
    lines.push(`total: ${humanSize(done)}/${humanSize(total)}`);
    return lines;
  }

  private draw(): void {
    this.last = Date.now();
    // One column short of the width: a line that fills the last column leaves some terminals
    // with a pending wrap, and the next line would start one row lower.
    const width = Math.max(20, (this.out.columns || 80) - 1);
    // The block only grows (layers are added, never removed): rewriting its lines in place
    // covers every line drawn before.
    let s = this.drawn ? `\x1b[${this.drawn}A` : '';
    const lines = this.lines();
    for (const l of lines) s += `\r\x1b[2K${l.length > width ? l.slice(0, width) : l}\n`;
    this.emit(s);
    this.drawn = lines.length;
  }

  /** The final state, drawn once and left on the screen; stderr is stderr again. Idempotent. */
  finish(): void {
    if (this.finished) return;
    if (this.mode === 'tty' && this.items.size) this.draw();
    this.finished = true;
    this.drawn = 0;
    if (this.write) {
      this.out.write = this.write;
      this.write = undefined;
    }
  }
}

/** What a layer (or blob) of a pull or push is doing; the names are Docker's. */
export type LayerStatus =
  | 'Already exists'
  | 'Waiting'
  | 'Downloading'
  | 'Download complete'
  | 'Extracting'
  | 'Pull complete'
  | 'Preparing'
  | 'Layer already exists'
  | 'Mounted'
  | 'Pushing'
  | 'Pushed';

/**
 * A pull's or a push's progress, as the engine reports it: the CLI draws it (transferRenderer
 * below), the API translates it into Docker's JSON progress stream (ts/api/progress-json.ts).
 */
export type TransferEvent =
  /** The transfer begins (before the registry was asked anything). */
  | { type: 'start'; op: 'pull' | 'push'; ref: string }
  /** Pull: the manifest is known; `layers` in the image's order. */
  | { type: 'resolved'; repository: string; tag: string; layers: { digest: string; size: number }[] }
  | { type: 'layer'; digest: string; status: LayerStatus; current?: number; total?: number; from?: string }
  /** Pull: the digest the image was pulled by (the index's for a multi-platform image). */
  | { type: 'digest'; digest: string }
  /** Push: the manifest is in the registry. */
  | { type: 'pushed'; tag?: string; digest: string; size: number };

export type TransferHook = (e: TransferEvent) => void;

/**
 * The CLI's display of a pull or push from its events (the text burrow always printed on
 * stderr). `finish` leaves the final state on the screen; call it when the transfer ends,
 * however it ends.
 */
export function transferRenderer(mode: Mode, out?: NodeJS.WriteStream): { onEvent: TransferHook; finish(): void } {
  const p = new Progress(mode, out);
  return {
    onEvent(e) {
      switch (e.type) {
        case 'start':
          p.line(e.op === 'pull' ? `Trying to pull ${e.ref}...` : `Pushing ${e.ref}...`);
          break;
        case 'resolved':
          break;
        case 'digest':
          p.finish();
          p.line(`Digest: ${e.digest}`);
          break;
        case 'pushed':
          p.line(`${e.tag ?? e.digest}: digest: ${e.digest} size: ${e.size}`);
          break;
        case 'layer':
          switch (e.status) {
            case 'Waiting':
              p.pending(e.digest);
              break;
            case 'Downloading':
              p.update(e.digest, e.current ?? 0, e.total ?? 0);
              break;
            case 'Mounted':
              p.done(e.digest, `Mounted from ${e.from ?? ''}`);
              break;
            case 'Extracting':
            case 'Preparing':
            case 'Pushing':
              break;
            default:
              p.done(e.digest, e.status);
          }
      }
    },
    finish: () => p.finish(),
  };
}
