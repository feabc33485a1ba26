/**
 * Answers that are a stream of Docker's JSON messages (pull, push, load, build): the 200 head
 * goes with the first line, so that an error before it is still an HTTP status; one after it is
 * an `errorDetail` line, as dockerd writes them.
 */
import type { ServerResponse } from 'node:http';
import { BurrowError } from '../errors';
import { errorMessage, type JsonMessage } from './progress-json';
import type { ApiRequest } from './router';

/**
 * A JSON-lines answer: the 200 head goes with the first line (so that an error before it is
 * still a status), each line ends with CRLF as dockerd's do.
 */
export function jsonLines(res: ServerResponse): { write(m: JsonMessage): void; started(): boolean } {
  return {
    write(m) {
      if (!res.headersSent) res.writeHead(200, { 'Content-Type': 'application/json' });
      if (!res.destroyed) res.write(`${JSON.stringify(m)}\r\n`);
    },
    started: () => res.headersSent,
  };
}

/** Cancelled when the client goes away before the answer ended. */
export function cancelOnClose(req: ApiRequest, res: ServerResponse): AbortController {
  const ac = new AbortController();
  const gone = (): void => {
    if (!res.writableFinished) ac.abort(new BurrowError('ECANCELED', 'the client went away'));
  };
  res.once('close', gone);
  req.raw.once('aborted', gone);
  return ac;
}

/** Runs a streamed operation: its error is a status before the stream started, an errorDetail line after. */
export async function streamed(res: ServerResponse, out: ReturnType<typeof jsonLines>, run: () => Promise<void>): Promise<void> {
  try {
    await run();
  } catch (err) {
    if (!out.started()) throw err;
    const { errorResponse } = await import('./http');
    out.write(errorMessage(errorResponse(err).message));
  }
  res.end();
}

