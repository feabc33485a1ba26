/** volumes routes of the Engine API (filled in by the volumes work). */
import type { Route } from '../router';

export const routes: Route[] = [];
