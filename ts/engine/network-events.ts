/**
 * Docker's network events around a container's run: a `connect` for each network the container
 * is on when it starts, a `disconnect` for each when it stops (Docker's daemon logs them in
 * connectToNetwork and releaseNetwork), beside the explicit `network connect`/`disconnect`.
 *
 * The connects are logged here, by the front end that starts the container. The disconnects
 * come when the container exits, which only its holder sees (the monitor, or the runtime's
 * foreground `run`, which outlive the CLI: crates/burrow-core/src/runtime/holder.rs): it logs
 * them, before the `die`, from D/networks.json, the list this module writes at each start and
 * after each `network connect`/`disconnect`.
 *
 * The networks are Docker's names for burrow's modes, as `network ls` and `network inspect`
 * show them (ts/engine/networks.ts): `bridge` (type bridge) for the default network (slirp4netns
 * or pasta), `host` (type host), `none` (type null), and each user-defined network (type
 * bridge). A container on another container's network namespace has none of its own, as in
 * Docker. Small on purpose: `burrow run` loads it.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { ContainerRecord } from '../container/records';
import { sha256Hex } from '../native';
import type { EngineContext } from './context';
import { emitEvent } from './events';

/** A network as an event's actor: its id, and the `name` and `type` attributes. */
export interface NetworkActor {
  ID: string;
  name: string;
  type: string;
}

export type BuiltinNetwork = 'bridge' | 'host' | 'none';

/** A built-in network's id: the same in every service that uses this store, as Docker's stay for a daemon. */
export function builtinNetworkId(ctx: Pick<EngineContext, 'store'>, name: BuiltinNetwork): string {
  return sha256Hex(`burrow-network\0${ctx.store.root}\0${name}`);
}

/** The networks a container is on, as Docker's events name them. */
export function containerNetworks(ctx: Pick<EngineContext, 'store'>, rec: ContainerRecord): NetworkActor[] {
  const mode = rec.net?.mode ?? rec.network;
  if (mode === 'user') return (rec.net?.networks ?? []).map((e) => ({ ID: e.network, name: e.name, type: 'bridge' }));
  if (mode === 'container' || mode.startsWith('container:')) return [];
  // As networks.ts counts members: the default modes, and a default that fell back to none, are `bridge`.
  const name: BuiltinNetwork = mode === 'slirp4netns' || mode === 'pasta' || rec.network === 'bridge' || rec.network === 'default' ? 'bridge' : mode === 'host' ? 'host' : 'none';
  return [{ ID: builtinNetworkId(ctx, name), name, type: name === 'none' ? 'null' : name }];
}

/**
 * Writes D/networks.json, what the holder logs a disconnect for when the container exits, and
 * returns the list. Whole or not at all (a holder may read it at that moment); a failure loses
 * the disconnect events, never the start.
 */
export function recordNetworks(ctx: Pick<EngineContext, 'store'>, rec: ContainerRecord, dir: string): NetworkActor[] {
  const nets = containerNetworks(ctx, rec);
  const file = path.join(dir, 'networks.json');
  try {
    fs.writeFileSync(`${file}.tmp`, JSON.stringify(nets));
    fs.renameSync(`${file}.tmp`, file);
  } catch {
    /* the container's directory is gone (removed meanwhile) */
  }
  return nets;
}

/** Docker's network event for each network: `container` is the container's full id. */
export function emitNetworkEvents(ctx: Pick<EngineContext, 'runRoot'>, action: 'connect' | 'disconnect', containerId: string, nets: NetworkActor[]): void {
  for (const n of nets) emitEvent(ctx, { Type: 'network', Action: action, Actor: { ID: n.ID, Attributes: { container: containerId, name: n.name, type: n.type } } });
}
