/** images routes of the Engine API (filled in by the images work). */
import type { Route } from '../router';

export const routes: Route[] = [];
