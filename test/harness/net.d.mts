// Types of net.mjs for the TypeScript tests (tsconfig.test.json).

/** The host's default gateway (IPv4, from /proc/net/route), or undefined without one. */
export function hostGateway(): string | undefined;
