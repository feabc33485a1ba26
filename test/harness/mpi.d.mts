// Types of mpi.mjs for the TypeScript tests (tsconfig.test.json).

/** Open MPI's runtime packages. */
export const PACKAGES: string[];
/** Whether mpirun and mpicc are installed (.ci/setup installs them). */
export function hasOpenMpi(): boolean;
/** The host files of Open MPI's runtime, sorted. */
export function openMpiFiles(): string[];
/** Writes the build context dir/Dockerfile (FROM base), dir/openmpi/, dir/hello; `files`: how many host files it copied. */
export function mpiContext(dir: string, base: string): { files: number };
