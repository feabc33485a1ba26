/** A pull's or push's progress on the terminal (redrawn) or as a plain log, around an engine call. */
import type { ImageHooks } from '../engine/images';

export async function withProgress<T>(quiet: boolean | undefined, run: (hooks: ImageHooks) => Promise<T>, op: 'pull' | 'push' = 'pull'): Promise<T> {
  const { progressMode, transferRenderer } = await import('../image/progress');
  // A push's display was never redrawn unless stderr alone is a terminal; a pull's needs both.
  const mode = quiet ? 'quiet' : op === 'pull' ? progressMode(false) : process.stderr.isTTY ? 'tty' : 'plain';
  const r = transferRenderer(mode);
  try {
    // Warnings (a store squashfs that could not be made, ts/engine/squash.ts) as other commands print them.
    return await run({ progress: r.onEvent, warn: (m) => process.stderr.write(`burrow: warning: ${m}\n`) });
  } finally {
    r.finish();
  }
}
