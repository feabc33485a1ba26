/**
 * The keepers of the shared user namespaces (burrow-runtime's `userns-keep`, see
 * docs/architecture.md "The shared user namespace"): one small process per set of id maps,
 * recorded in RUNTIME-ROOT/@userns/KEY (a name no container id can have). A keeper ends as soon as its record is removed, so
 * removing the records is how they are ended, as `podman system migrate` stops its pause
 * process: after a migration the store's maps are other ones, and a new start maps afresh.
 */
import fs from 'node:fs';
import path from 'node:path';

/** The records' directory under a run root (the runtime's root is RUNROOT/runtime). */
export function keeperRecords(runRoot: string): string {
  return path.join(runRoot, 'runtime', '@userns');
}

/** Removes every keeper's record (the keepers end at once); returns how many there were. */
export function endKeepers(runRoot: string): number {
  const dir = keeperRecords(runRoot);
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return 0;
  }
  let n = 0;
  for (const name of names) {
    fs.rmSync(path.join(dir, name), { force: true });
    if (!name.startsWith('.')) n++;
  }
  return n;
}
