/**
 * For the Engine API's streams: a raw-socket client for hijacked connections (attach, exec
 * start), as Docker's clients do them (`Connection: Upgrade`, `Upgrade: tcp`, then both ways on
 * the socket), and a parser of Docker's multiplexed stream framing.
 */
import net from 'node:net';

export interface Frame {
  stream: number;
  data: Buffer;
}

/** Splits Docker's framing (8-byte header: stream, 3 zero bytes, big-endian length) into frames; throws on a malformed one. */
export function parseFrames(buf: Buffer): { frames: Frame[]; rest: Buffer } {
  const frames: Frame[] = [];
  let at = 0;
  while (buf.length - at >= 8) {
    const stream = buf[at]!;
    if (![0, 1, 2].includes(stream) || buf[at + 1] !== 0 || buf[at + 2] !== 0 || buf[at + 3] !== 0) throw new Error(`bad frame header at ${at}: ${buf.subarray(at, at + 8).toString('hex')}`);
    const len = buf.readUInt32BE(at + 4);
    if (buf.length - at - 8 < len) break;
    frames.push({ stream, data: buf.subarray(at + 8, at + 8 + len) });
    at += 8 + len;
  }
  return { frames, rest: buf.subarray(at) };
}

/** The text of each stream in a framed body: `{1: "...", 2: "..."}`. */
export function demux(buf: Buffer): Record<number, string> {
  const { frames, rest } = parseFrames(buf);
  if (rest.length) throw new Error(`${rest.length} trailing bytes after the frames`);
  const out: Record<number, string> = {};
  for (const f of frames) out[f.stream] = (out[f.stream] ?? '') + f.data.toString('utf8');
  return out;
}

export interface Hijacked {
  status: number;
  head: string;
  sock: net.Socket;
  /** Everything received after the response head so far. */
  received(): Buffer;
  /** Resolves once `pred` holds for what was received (rejects when the connection ends first). */
  until(pred: (b: Buffer) => boolean, what?: string): Promise<Buffer>;
  /** Resolves with everything once the server closed its side. */
  ended(): Promise<Buffer>;
}

/** A request on a fresh connection that asks for the upgrade; resolves after the response head. */
export function hijack(sockPath: string, method: string, p: string, body?: unknown, upgrade = true): Promise<Hijacked> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(sockPath);
    // Our half-close (CloseWrite, as the docker CLI does after stdin's end) must not end theirs.
    sock.setNoDelay(true);
    const data = body === undefined ? Buffer.alloc(0) : Buffer.from(JSON.stringify(body));
    const lines = [`${method} ${p} HTTP/1.1`, 'Host: docker', ...(upgrade ? ['Connection: Upgrade', 'Upgrade: tcp'] : []), ...(body !== undefined ? ['Content-Type: application/json'] : []), `Content-Length: ${data.length}`, '', ''];
    sock.write(Buffer.concat([Buffer.from(lines.join('\r\n')), data]));
    let buf = Buffer.alloc(0);
    let headDone = false;
    let endedFlag = false;
    const waiters: (() => void)[] = [];
    const wake = () => waiters.splice(0).forEach((w) => w());
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (!headDone) {
        const i = buf.indexOf('\r\n\r\n');
        if (i < 0) return;
        headDone = true;
        const head = buf.subarray(0, i).toString('latin1');
        buf = buf.subarray(i + 4);
        const status = Number(/^HTTP\/1\.1 (\d+)/.exec(head)?.[1] ?? 0);
        const h: Hijacked = {
          status,
          head,
          sock,
          received: () => buf,
          until(pred, what = 'the expected output') {
            return new Promise((res, rej) => {
              const check = () => {
                if (pred(buf)) return res(buf);
                if (endedFlag) return rej(new Error(`the connection ended before ${what}; got ${JSON.stringify(buf.toString('latin1'))}`));
                waiters.push(check);
              };
              check();
            });
          },
          ended() {
            return new Promise((res) => {
              const check = () => (endedFlag ? res(buf) : waiters.push(check));
              check();
            });
          },
        };
        resolve(h);
      }
      wake();
    });
    sock.on('end', () => {
      endedFlag = true;
      wake();
    });
    sock.on('close', () => {
      endedFlag = true;
      wake();
      if (!headDone) reject(new Error(`the connection closed before a response head: ${buf.toString('latin1')}`));
    });
    sock.on('error', (e) => {
      if (!headDone) reject(e);
    });
  });
}
