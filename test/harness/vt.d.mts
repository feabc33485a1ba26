// Types of vt.mjs for the TypeScript tests (tsconfig.test.json).

/** The screen's lines after `out` was written to a terminal `cols` (80) wide. */
export function render(out: string, cols?: number): string[];
