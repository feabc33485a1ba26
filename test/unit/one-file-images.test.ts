/**
 * One-file images' headers (ts/storage/squash.ts): a SIF's primary system partition found from
 * its global header and descriptors (the layout of github.com/sylabs/sif's pkg/sif), and the
 * refusals with their causes: not an image, truncated, no or an encrypted system partition, a
 * squashfs of another major version. The files are made here byte by byte; real SIF files made
 * by siftool are run in test/integration/squash.test.ts.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { isFileImageArg, isSifFile, locateSquashfs, openFileImage } from '../../ts/storage/squash';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-unit-sif-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** A squashfs superblock (96 bytes) saying the file system is `used` bytes long. */
function superblock(used: number, major = 4): Buffer {
  const b = Buffer.alloc(96);
  b.write('hsqs', 0, 'latin1');
  b.writeUInt16LE(major, 28);
  b.writeBigUInt64LE(BigInt(used), 40);
  return b;
}

interface Part {
  fstype: number;
  parttype: number;
  used?: boolean;
  datatype?: number;
  size?: number;
}

/** A SIF of version 01 with one descriptor per part, each part a squashfs superblock padded to `size`. */
function sif(parts: Part[], { truncate = 0 } = {}): Buffer {
  const DESC = 585;
  const descOff = 128;
  let dataOff = 4096;
  const header = Buffer.alloc(128);
  header.write('#!/usr/bin/env run-singularity\n', 0, 'latin1');
  header.write('SIF_MAGIC\0', 32, 'latin1');
  header.write('01\0', 42, 'latin1');
  header.writeBigInt64LE(BigInt(parts.length), 88);
  header.writeBigInt64LE(BigInt(descOff), 96);
  header.writeBigInt64LE(BigInt(parts.length * DESC), 104);
  const descs = Buffer.alloc(parts.length * DESC);
  const data: Buffer[] = [];
  parts.forEach((p, i) => {
    const size = p.size ?? 4096;
    const d = descs.subarray(i * DESC);
    d.writeInt32LE(p.datatype ?? 0x4004, 0);
    d[4] = p.used === false ? 0 : 1;
    d.writeUInt32LE(i + 1, 5);
    d.writeBigInt64LE(BigInt(dataOff), 17);
    d.writeBigInt64LE(BigInt(size), 25);
    d.writeInt32LE(p.fstype, 201);
    d.writeInt32LE(p.parttype, 205);
    const part = Buffer.alloc(size);
    superblock(size).copy(part);
    data.push(part);
    dataOff += size;
  });
  const whole = Buffer.concat([header, descs, Buffer.alloc(4096 - 128 - descs.length), ...data]);
  return whole.subarray(0, whole.length - truncate);
}

function file(name: string, bytes: Buffer): string {
  const p = path.join(dir, name);
  fs.writeFileSync(p, bytes);
  return p;
}

const SQUASH = 1;
const ENCRYPTED = 5;
const PRIMSYS = 2;
const DATA = 3;

describe('SIF files', () => {
  it('finds the primary system squashfs among the descriptors, at its offset', async () => {
    const p = file('ok.sif', sif([{ fstype: SQUASH, parttype: DATA }, { fstype: SQUASH, parttype: PRIMSYS, used: false }, { fstype: SQUASH, parttype: PRIMSYS, size: 8192 }]));
    expect(isSifFile(p)).toBe(true);
    expect(isFileImageArg(p)).toBe(true);
    const img = locateSquashfs(p);
    expect(img.kind).toBe('sif');
    expect(img.offset).toBe(4096 + 4096 + 4096);
    // Its superblock is all there is of a squashfs here: unsquashfs then refuses it, with the cause.
    await expect(openFileImage(p)).rejects.toMatchObject({ code: 'EFILE_IMAGE', message: expect.stringMatching(/unsquashfs cannot read it/) });
  });

  it.each<[string, Buffer, RegExp]>([
    ['data.sif', sif([{ fstype: SQUASH, parttype: DATA }]), /no primary system partition with a squashfs/],
    ['enc.sif', sif([{ fstype: ENCRYPTED, parttype: PRIMSYS }]), /encrypted/],
    ['short.sif', sif([{ fstype: SQUASH, parttype: PRIMSYS }], { truncate: 100 }), /truncated: its system partition ends at 8192, the file has 8092 bytes/],
    ['header.sif', sif([{ fstype: SQUASH, parttype: PRIMSYS }]).subarray(0, 100), /truncated: shorter than a SIF header/],
    ['desc.sif', sif([{ fstype: SQUASH, parttype: PRIMSYS }]).subarray(0, 400), /descriptors lie outside the file/],
  ])('refuses %s with its cause', async (name, bytes, why) => {
    const p = file(name, bytes);
    await expect(openFileImage(p)).rejects.toMatchObject({ code: 'EFILE_IMAGE', message: expect.stringMatching(why) });
  });
});

describe('squashfs files', () => {
  it.each<[string, Buffer, RegExp]>([
    ['text.sqfs', Buffer.from('not an image\n'.repeat(20)), /not a squashfs or SIF image/],
    ['short.sqfs', Buffer.concat([superblock(10_000), Buffer.alloc(1000)]), /truncated: its squashfs needs 10000 bytes, the file has 1096/],
    ['v3.sqfs', Buffer.concat([superblock(4096, 3), Buffer.alloc(4000)]), /squashfs version 3\.x/],
  ])('refuses %s with its cause', async (name, bytes, why) => {
    const p = file(name, bytes);
    await expect(openFileImage(p)).rejects.toMatchObject({ code: 'EFILE_IMAGE', message: expect.stringMatching(why) });
  });

  it('takes only paths and one-file suffixes for files, never image references', () => {
    const p = file('plain.sqfs', superblock(96));
    expect(isFileImageArg(p)).toBe(true);
    expect(isFileImageArg('busybox')).toBe(false);
    expect(isFileImageArg('registry:5000/app:1')).toBe(false);
    expect(isFileImageArg(path.join(dir, 'missing.sqfs'))).toBe(false);
    expect(isFileImageArg(dir)).toBe(false);
  });
});
