// Types of test-user.mjs for the TypeScript tests (tsconfig.test.json).

/** $BURROW_TEST_USER, else burrowtest. */
export const TEST_USER: string;
/** The supplementary group whose directory `--group-add keep-groups` must keep readable. */
export const SHARE_GROUP: string;

export interface EnsuredTestUser {
  name: string;
  uid: number;
  gid: number;
  home: string;
  runtimeDir: string;
  share: { group: string; gid: number; dir: string };
}

/** Creates (idempotently, as root) the test user, its id ranges and its share group. */
export function ensureTestUser(): EnsuredTestUser;

/** Directory of the share group's fixture for `uid`. */
export function shareDir(uid: number): string;
