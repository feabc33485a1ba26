/**
 * A container's user-defined networks as the API shows them: Docker's EndpointSettings per
 * network (ts/network/inspect.ts userEndpoints, what inspect shows) for the container list
 * (`docker ps`'s NETWORKS column, compose's `NetworkSettings.Networks`), and what Docker adds
 * for its clients: the container's short id among each endpoint's Aliases, and the first network's
 * name as HostConfig.NetworkMode.
 *
 * docker-compose 1.29 relies on the short-id alias: without it, before starting a service's
 * container, it disconnects it from the project network and connects it again.
 */
import type { ContainerRecord } from '../../container/records';
import type { EngineContext } from '../../engine/context';
import type { NetworkLookup } from '../../network/inspect';

type Endpoints = Record<string, Record<string, unknown>>;

/** A dotted IPv4 address (the API's IPAMConfig.IPv4Address, a network's gateway). */
export function isIpv4(s: string): boolean {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
  return !!m && m.slice(1).every((b) => Number(b) <= 255);
}

type NetworkDefs = Map<string, Omit<NonNullable<ReturnType<NetworkLookup>>, 'endpointId'> | undefined>;

/** As ts/container/inspect.ts looks the container's networks up; `defs` keeps what was read (one list, many containers). */
function lookup(ctx: EngineContext, containerId: string, engine: typeof import('../../engine/networks'), defs: NetworkDefs): NetworkLookup {
  return (id) => {
    if (!defs.has(id)) {
      try {
        const d = engine.networkDef(engine.findNetwork(ctx, id));
        defs.set(id, { subnet: d.subnet, gateway: d.gateway, ...(d.subnet6 ? { subnet6: d.subnet6, gateway6: d.gateway6 } : {}) });
      } catch {
        defs.set(id, undefined);
      }
    }
    const d = defs.get(id);
    return d && { ...d, endpointId: engine.endpointId(id, containerId) };
  };
}

/** Docker's additions to a container's user-defined endpoints (in place): the short-id alias. */
export function withShortIdAlias(rec: ContainerRecord, eps: Endpoints): Endpoints {
  const short = rec.id.slice(0, 12);
  for (const e of Object.values(eps)) {
    const aliases = Array.isArray(e.Aliases) ? (e.Aliases as string[]) : [];
    e.Aliases = [short, ...aliases.filter((a) => a !== short)];
  }
  return eps;
}

/**
 * NetworkSettings.Networks of a container on user-defined networks ({} when it is on none).
 * `defs`: networks already read, shared by the containers of one list.
 */
export async function dockerEndpoints(ctx: EngineContext, rec: ContainerRecord, defs: NetworkDefs = new Map()): Promise<Endpoints> {
  if (rec.net?.mode !== 'user' || !rec.net.networks?.length) return {};
  const [{ userEndpoints }, engine] = await Promise.all([import('../../network/inspect'), import('../../engine/networks')]);
  return withShortIdAlias(rec, userEndpoints(rec.net, rec.id, rec.name, lookup(ctx, rec.id, engine, defs)));
}

/** Docker's HostConfig.NetworkMode of a container on user-defined networks: its first network's name. */
export function userNetworkMode(rec: ContainerRecord): string | undefined {
  return rec.net?.mode === 'user' ? rec.net.networks?.[0]?.name : undefined;
}
