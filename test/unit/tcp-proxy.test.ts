/**
 * The TCP proxy the pull and registry integration tests put in front of the test registry
 * (test/integration/image-helpers.ts, startProxy): what it counts, strips and cuts is what those
 * tests' assertions rest on, so it is checked here against a plain HTTP server on loopback.
 */
import http from 'node:http';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closeAllProxies, startProxy } from '../integration/image-helpers';

const BODY = Buffer.alloc(256 * 1024, 'x');
let server: http.Server;
let upstream = '';
/** The Range header of each request the server saw ('' for none). */
const seen: string[] = [];

beforeAll(async () => {
  server = http.createServer((req, res) => {
    seen.push(req.headers.range ?? '');
    res.writeHead(200, { 'content-length': BODY.length, connection: 'close' });
    res.end(BODY);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  upstream = `127.0.0.1:${(server.address() as net.AddressInfo).port}`;
});

afterAll(async () => {
  await closeAllProxies();
  await new Promise((r) => server.close(r));
});

/** GET / through `host` with an optional Range header; resolves with the bytes received, or the error. */
function get(host: string, range?: string): Promise<{ bytes: number; error?: Error }> {
  const [hostname, port] = host.split(':');
  return new Promise((resolve) => {
    let bytes = 0;
    const req = http.get({ hostname, port: Number(port), path: '/', agent: false, headers: range ? { range } : {} }, (res) => {
      res.on('data', (d: Buffer) => (bytes += d.length));
      res.on('end', () => resolve({ bytes }));
      res.on('error', (error) => resolve({ bytes, error }));
    });
    req.on('error', (error) => resolve({ bytes, error }));
  });
}

describe('the integration tests’ TCP proxy', () => {
  it('passes requests and answers through, recording heads, Range requests and bytes down', async () => {
    const p = await startProxy(upstream);
    seen.length = 0;
    expect((await get(p.host, 'bytes=10-')).bytes).toBe(BODY.length);
    expect(seen).toEqual(['bytes=10-']);
    expect(p.heads).toHaveLength(1);
    expect(p.heads[0]).toMatch(/^GET \/ HTTP\/1\.1\r\n/);
    expect(p.heads[0]).toMatch(/^range: bytes=10-$/im);
    expect(p.ranges).toBe(1);
    expect(p.bytesDown).toBeGreaterThan(BODY.length);
    expect(p.drops).toBe(0);
  });

  it('with stripRange, the server never sees the Range header the client sent (still counted)', async () => {
    const p = await startProxy(upstream, { stripRange: true });
    seen.length = 0;
    expect((await get(p.host, 'bytes=10-')).bytes).toBe(BODY.length);
    expect(seen).toEqual(['']);
    expect(p.ranges).toBe(1);
    expect(p.heads[0]).toMatch(/^range: bytes=10-$/im);
  });

  it('with dropAfter, cuts the first answer that passes it, and only that one', async () => {
    const p = await startProxy(upstream, { dropAfter: 64 * 1024 });
    const first = await get(p.host);
    expect(first.error).toBeDefined();
    expect(first.bytes).toBeLessThan(BODY.length);
    expect(p.drops).toBe(1);
    expect(p.bytesDown).toBeLessThanOrEqual(64 * 1024);
    const second = await get(p.host);
    expect(second).toEqual({ bytes: BODY.length });
    expect(p.drops).toBe(1);
  });

  it('closes its listener: nothing answers on its port afterwards', async () => {
    const p = await startProxy(upstream);
    await p.close();
    expect((await get(p.host)).error).toMatchObject({ code: 'ECONNREFUSED' });
  });
});
