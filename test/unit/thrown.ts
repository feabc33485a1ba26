/** What a call throws, in the forms the unit tests compare: a BurrowError's stable code and message. */
import { BurrowError } from '../../ts/errors';

/** The code of the BurrowError `fn` throws ('not a BurrowError' for another error); undefined when it returns. */
export function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return err instanceof BurrowError ? err.code : 'not a BurrowError';
  }
  return undefined;
}

/** What `fn` throws as `CODE: message` (another error as its string); 'no error' when it returns. */
export function thrown(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    return asText(err);
  }
  return 'no error';
}

/** The same for a promise: what it rejects with, or 'no error'. */
export async function rejected(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    return asText(err);
  }
  return 'no error';
}

function asText(err: unknown): string {
  return err instanceof BurrowError ? `${err.code}: ${err.message}` : String(err);
}
