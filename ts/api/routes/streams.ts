/** streams routes of the Engine API (filled in by the streams work). */
import type { Route } from '../router';

export const routes: Route[] = [];
