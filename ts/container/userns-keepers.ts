/**
 * The keepers of the shared user namespaces (burrow-runtime's `userns-keep`, see
 * docs/architecture.md "The shared user namespace"): one small process per set of id maps,
 * recorded in RUNTIME-ROOT/@userns/KEY (a name no container id can have). A keeper ends as soon
 * as its record is removed, so removing the records is how they are ended, as `podman system
 * migrate` stops its pause process: after a migration the store's maps are other ones, and a
 * new start maps afresh.
 */
import fs from 'node:fs';
import path from 'node:path';

/** Removes every keeper's record under a run root (the runtime's root is RUNROOT/runtime): the keepers end at once. */
export function endKeepers(runRoot: string): void {
  fs.rmSync(path.join(runRoot, 'runtime', '@userns'), { recursive: true, force: true });
}
