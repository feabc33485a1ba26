// Types of siftool.mjs for the TypeScript tests (tsconfig.test.json).

export const SIFTOOL_VERSION: string;
/** The siftool binary ($SIFTOOL overrides); throws an Error that says how to get it. */
export function siftoolPath(): string;
