/** The API versions this service speaks: Docker Engine API 1.41 (the docker.io 20.10 CLI's). */
import { VERSION } from '../version';

export const API_VERSION = '1.41';
export const MIN_API_VERSION = '1.24';

export function serverHeader(): string {
  return `Burrow/${VERSION} (linux)`;
}
