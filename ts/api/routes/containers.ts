/** containers routes of the Engine API (filled in by the containers work). */
import type { Route } from '../router';

export const routes: Route[] = [];
