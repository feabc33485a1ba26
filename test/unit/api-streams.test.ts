/** The pure parts of the Engine API's streams: Docker's frame header, Go's FileMode, archive paths, log times. */
import { describe, expect, it } from 'vitest';
import { frameHeader } from '../../ts/api/routes/streams';
import { containerPath, goFileMode, isDirMode } from '../../ts/container/archive';
import { logTime, parseLine } from '../../ts/container/logs';
import { BurrowError } from '../../ts/errors';

describe("Docker's stream framing", () => {
  it('puts the stream, three zero bytes and the big-endian length in 8 bytes', () => {
    expect([...frameHeader('stdout', 5)]).toEqual([1, 0, 0, 0, 0, 0, 0, 5]);
    expect([...frameHeader('stderr', 0x01020304)]).toEqual([2, 0, 0, 0, 1, 2, 3, 4]);
  });
});

describe("Go's os.FileMode from st_mode", () => {
  it('sets the type bits Docker clients test', () => {
    expect(goFileMode(0o100644)).toBe(0o644);
    expect(goFileMode(0o040755)).toBe(2 ** 31 + 0o755);
    expect(isDirMode(goFileMode(0o040755))).toBe(true);
    expect(isDirMode(goFileMode(0o100755))).toBe(false);
    expect(goFileMode(0o120777)).toBe(2 ** 27 + 0o777);
    expect(goFileMode(0o020666)).toBe(2 ** 26 + 2 ** 21 + 0o666);
    expect(goFileMode(0o104755)).toBe(2 ** 23 + 0o755);
    expect(goFileMode(0o041777)).toBe(2 ** 31 + 2 ** 20 + 0o777);
  });
});

describe('archive paths', () => {
  it("are taken from the container's root, `..` never above it, `/.` kept", () => {
    expect(containerPath('etc/hostname')).toBe('/etc/hostname');
    expect(containerPath('/../../etc')).toBe('/etc');
    expect(containerPath('/data/.')).toBe('/data/.');
    expect(() => containerPath('')).toThrow(BurrowError);
  });
});

describe('log times and lines', () => {
  it('takes Unix seconds (the API), RFC 3339 and durations', () => {
    expect(logTime('1700000000')).toBe(1_700_000_000_000);
    expect(logTime('1700000000.5')).toBe(1_700_000_000_500);
    expect(logTime('2024-01-02T03:04:05Z')).toBe(Date.parse('2024-01-02T03:04:05Z'));
    expect(Math.abs(logTime('10m') - (Date.now() - 600_000))).toBeLessThan(5_000);
    expect(() => logTime('yesterday')).toThrow(BurrowError);
  });

  it('parses k8s-file lines, partial ones without their newline', () => {
    expect(parseLine('2024-01-02T03:04:05.1Z stdout F hello', 'k8s-file')).toEqual({ time: '2024-01-02T03:04:05.1Z', stream: 'stdout', text: 'hello\n' });
    expect(parseLine('2024-01-02T03:04:05.1Z stderr P part', 'k8s-file')).toEqual({ time: '2024-01-02T03:04:05.1Z', stream: 'stderr', text: 'part' });
  });
});
