/**
 * Pull progress: on a terminal, one line per layer redrawn in place with bytes and speed, and a
 * total; otherwise plain lines when a layer finishes; nothing with --quiet.
 */
import { humanSize } from '../cli/format/table';

type Mode = 'tty' | 'plain' | 'quiet';

interface Item {
  done: number;
  total: number;
  status: string;
  started: number;
}

export class Progress {
  private items = new Map<string, Item>();
  private drawn = 0;
  private last = 0;

  constructor(private readonly mode: Mode) {}

  line(text: string): void {
    if (this.mode === 'quiet') return;
    this.clear();
    process.stderr.write(`${text}\n`);
    this.drawn = 0;
  }

  update(digest: string, done: number, total: number): void {
    const it = this.items.get(digest) ?? { done: 0, total, status: 'Downloading', started: Date.now() };
    it.done = done;
    it.total = total;
    this.items.set(digest, it);
    if (this.mode === 'tty' && Date.now() - this.last > 100) this.draw();
  }

  done(digest: string, status: string): void {
    const it = this.items.get(digest) ?? { done: 0, total: 0, status, started: Date.now() };
    it.status = status;
    if (it.total) it.done = it.total;
    this.items.set(digest, it);
    if (this.mode === 'plain') process.stderr.write(`${digest.slice(7, 19)}: ${status}\n`);
    if (this.mode === 'tty') this.draw();
  }

  private clear(): void {
    if (this.mode === 'tty' && this.drawn) process.stderr.write(`\x1b[${this.drawn}A\x1b[J`);
  }

  private draw(): void {
    this.last = Date.now();
    this.clear();
    const lines: string[] = [];
    let done = 0;
    let total = 0;
    for (const [d, it] of this.items) {
      done += it.done;
      total += it.total;
      const secs = Math.max(0.001, (Date.now() - it.started) / 1000);
      const bar = it.status === 'Downloading' && it.total ? ` ${humanSize(it.done)}/${humanSize(it.total)} ${humanSize(it.done / secs)}/s` : '';
      lines.push(`${d.slice(7, 19)}: ${it.status}${bar}`);
    }
    lines.push(`total: ${humanSize(done)}/${humanSize(total)}`);
    process.stderr.write(lines.join('\n') + '\n');
    this.drawn = lines.length;
  }

  finish(): void {
    if (this.mode === 'tty' && this.items.size) this.draw();
    this.drawn = 0;
  }
}
