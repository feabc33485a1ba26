/** networks routes of the Engine API (filled in by the networks work). */
import type { Route } from '../router';

export const routes: Route[] = [];
