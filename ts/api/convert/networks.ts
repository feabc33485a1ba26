/**
 * A container's user-defined networks in Docker's shapes, for the API's container list
 * (`docker ps`'s NETWORKS column, compose's `NetworkSettings.Networks`) and inspect: one
 * EndpointSettings per network, keyed by the network's name, from the endpoints the container's
 * record keeps (ts/network/user.ts EndpointRecord) and the networks' records (gateway, prefix).
 *
 * Docker lists the container's short id among an endpoint's Aliases on user-defined networks,
 * and docker-compose 1.29 relies on it: without it compose disconnects and reconnects every
 * service container before starting it.
 */
import { createHash } from 'node:crypto';
import type { ContainerRecord } from '../../container/records';
import type { EngineContext } from '../../engine/context';
import type { NetworkRecord as DockerNetworkRecord } from '../../engine/networks';
import type { EndpointRecord } from '../../network/user';

export interface EndpointSettings {
  IPAMConfig: { IPv4Address: string } | null;
  Links: null;
  Aliases: string[] | null;
  NetworkID: string;
  EndpointID: string;
  Gateway: string;
  IPAddress: string;
  IPPrefixLen: number;
  IPv6Gateway: string;
  GlobalIPv6Address: string;
  GlobalIPv6PrefixLen: number;
  MacAddress: string;
  DriverOpts: null;
}

/** The container's endpoints on user-defined networks (none unless its mode is `user`). */
export function userEndpoints(rec: ContainerRecord): EndpointRecord[] {
  return rec.net?.mode === 'user' ? (rec.net.networks ?? []) : [];
}

/** Docker's EndpointID: stable for a container on a network, 64 hex as Docker's. */
export function endpointId(containerId: string, networkId: string): string {
  return createHash('sha256').update(`burrow-endpoint\0${containerId}\0${networkId}`).digest('hex');
}

function subnetOf(n: DockerNetworkRecord | undefined): { gateway: string; prefix: number } {
  const cfg = n?.IPAM.Config.find((c) => typeof c.Subnet === 'string' && !String(c.Subnet).includes(':'));
  const len = Number(String(cfg?.Subnet ?? '').split('/')[1]);
  return { gateway: typeof cfg?.Gateway === 'string' ? cfg.Gateway : '', prefix: Number.isInteger(len) ? len : 0 };
}

/**
 * Docker's NetworkSettings.Networks of a container on user-defined networks. `active`: whether
 * its endpoints are up (it runs); Docker shows the addresses of active endpoints only.
 */
export async function dockerEndpoints(ctx: EngineContext, rec: ContainerRecord, active: boolean, opts: { aliases: boolean } = { aliases: true }): Promise<Record<string, EndpointSettings>> {
  const eps = userEndpoints(rec);
  if (!eps.length) return {};
  const { findNetwork } = await import('../../engine/networks');
  const out: Record<string, EndpointSettings> = {};
  for (const ep of eps) {
    let n: DockerNetworkRecord | undefined;
    try {
      n = findNetwork(ctx, ep.network);
    } catch {
      /* removed by hand: the endpoint is shown by the name it had */
    }
    const { gateway, prefix } = subnetOf(n);
    out[n?.Name ?? ep.name] = {
      IPAMConfig: ep.ipGiven ? { IPv4Address: ep.ip } : null,
      Links: null,
      Aliases: opts.aliases ? [...new Set([rec.id.slice(0, 12), ...ep.aliases])] : null,
      NetworkID: ep.network,
      EndpointID: active ? endpointId(rec.id, ep.network) : '',
      Gateway: active ? gateway : '',
      IPAddress: active ? ep.ip : '',
      IPPrefixLen: active ? prefix : 0,
      IPv6Gateway: '',
      GlobalIPv6Address: active && ep.ip6 ? ep.ip6 : '',
      GlobalIPv6PrefixLen: 0,
      MacAddress: active ? ep.mac : '',
      DriverOpts: null,
    };
  }
  return out;
}

/** Docker's HostConfig.NetworkMode of a container on user-defined networks: its first network's name. */
export function userNetworkMode(rec: ContainerRecord, endpoints: Record<string, EndpointSettings>): string | undefined {
  const first = userEndpoints(rec)[0];
  if (!first) return undefined;
  return Object.entries(endpoints).find(([, e]) => e.NetworkID === first.network)?.[0] ?? first.name;
}
