/** The plain-HTTP probe for insecure registries (ts/image/registry.ts), against loopback servers. */
import http from 'node:http';
import net from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { speaksHttp } from '../../ts/image/registry';

const servers: net.Server[] = [];
afterAll(() => servers.forEach((s) => s.close()));

async function listen(s: net.Server): Promise<string> {
  servers.push(s);
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  return `127.0.0.1:${(s.address() as net.AddressInfo).port}`;
}

describe('speaksHttp', () => {
  it('is true for a plain HTTP server', async () => {
    const host = await listen(http.createServer((_q, r) => r.writeHead(401).end()));
    expect(await speaksHttp(host, undefined)).toBe(true);
  });

  it('is false for a TLS server (it answers plain text with an alert) and one that just closes', async () => {
    const alert = Buffer.from([0x15, 0x03, 0x01, 0x00, 0x02, 0x02, 0x46]);
    const tlsLike = await listen(net.createServer((c) => c.once('data', () => c.end(alert))));
    expect(await speaksHttp(tlsLike, undefined)).toBe(false);
    const closes = await listen(net.createServer((c) => c.destroy()));
    expect(await speaksHttp(closes, undefined)).toBe(false);
    // What Go's TLS servers (the registry's) answer to plain HTTP.
    const goTls = await listen(net.createServer((c) => c.once('data', () => c.end('HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n'))));
    expect(await speaksHttp(goTls, undefined)).toBe(false);
  });

  it('is false where nothing listens', async () => {
    const s = net.createServer();
    const host = await listen(s);
    await new Promise((r) => s.close(r));
    expect(await speaksHttp(host, undefined)).toBe(false);
  });
});
