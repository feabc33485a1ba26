/**
 * HTTP helpers of the Engine API service: Docker's JSON error body, JSON responses, request
 * bodies with a size limit. Docker's clients read `{"message": "..."}` on every error status.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { BurrowError, httpStatusFor } from '../errors';

/** An error with the HTTP status the client gets: 400, 404, 409, 304, 500… */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

/** A body larger than this is refused (413): JSON requests are small; archives stream instead. */
export const JSON_BODY_LIMIT = 4 << 20;

/** The status and Docker's error body for any error a handler throws. */
export function errorResponse(err: unknown): { status: number; message: string } {
  if (err instanceof ApiError) return { status: err.status, message: err.message };
  if (err instanceof BurrowError) return { status: httpStatusFor(err.code), message: err.fix ? `${err.message}: ${err.fix}` : err.message };
  return { status: 500, message: err instanceof Error ? err.message : String(err) };
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = body === undefined ? '' : JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

export function sendError(res: ServerResponse, err: unknown): void {
  const { status, message } = errorResponse(err);
  if (res.headersSent) {
    // A stream already started: all that can be done is to end it (Docker does the same).
    res.destroy();
    return;
  }
  sendJson(res, status, { message });
}

/** 204 No Content: what Docker answers to start, stop, kill, DELETE… */
export function noContent(res: ServerResponse, status = 204): void {
  res.writeHead(status);
  res.end();
}

/** The raw body, refused past `limit` bytes (413) without reading the rest into memory. */
export function readBody(req: IncomingMessage, limit = JSON_BODY_LIMIT): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        reject(new ApiError(413, `request body larger than ${limit} bytes`));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

/** The JSON body, `undefined` when empty; malformed JSON is a 400 naming the problem. */
export async function readJson(req: IncomingMessage, limit = JSON_BODY_LIMIT): Promise<unknown> {
  const buf = await readBody(req, limit);
  if (buf.length === 0) return undefined;
  try {
    return JSON.parse(buf.toString('utf8')) as unknown;
  } catch (err) {
    throw new ApiError(400, `invalid JSON body: ${(err as Error).message}`);
  }
}

/** A boolean query parameter as Docker's clients send them: 1/true/True, 0/false/False or absent. */
export function boolParam(q: URLSearchParams, name: string, dflt = false): boolean {
  const v = q.get(name);
  if (v === null || v === '') return dflt;
  if (/^(1|true)$/i.test(v)) return true;
  if (/^(0|false)$/i.test(v)) return false;
  throw new ApiError(400, `invalid boolean value for ${name}: ${v}`);
}

/** Docker's `filters` query parameter: JSON `{"key": ["v", …]}` or `{"key": {"v": true}}`. */
export function filtersParam(q: URLSearchParams): Record<string, string[]> {
  const raw = q.get('filters');
  if (!raw) return {};
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch {
    throw new ApiError(400, `invalid filters: ${raw}`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new ApiError(400, `invalid filters: ${raw}`);
  const out: Record<string, string[]> = {};
  for (const [k, val] of Object.entries(v as Record<string, unknown>)) {
    if (Array.isArray(val)) out[k] = val.map(String);
    else if (typeof val === 'object' && val !== null) out[k] = Object.keys(val).filter((x) => (val as Record<string, unknown>)[x]);
    else throw new ApiError(400, `invalid filters: ${raw}`);
  }
  return out;
}
