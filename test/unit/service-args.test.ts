/**
 * The service's own entry (ts/api/main.ts) parses the plain shapes of `system service` and
 * `system dial-stdio` as commander does for the CLI, and leaves every other line to the CLI.
 */
import { describe, expect, it } from 'vitest';
import { parseServiceArgs } from '../../ts/api/main';

describe('parseServiceArgs', () => {
  it('reads the plain shapes, with the global options before the command', () => {
    expect(parseServiceArgs(['system', 'service'])).toEqual({ globals: {}, command: 'service', opts: { time: '5' } });
    expect(parseServiceArgs(['--root', '/s', '--runroot', '/r', '--storage-driver', 'copy', 'system', 'service', '--time', '0', 'unix:///tmp/x.sock'])).toEqual({
      globals: { root: '/s', runroot: '/r', storageDriver: 'copy' },
      command: 'service',
      opts: { time: '0' },
      uri: 'unix:///tmp/x.sock',
    });
    expect(parseServiceArgs(['system', 'service', 'tcp://127.0.0.1:1', '-t', '3', '--allow-remote'])).toEqual({ globals: {}, command: 'service', opts: { time: '3', allowRemote: true }, uri: 'tcp://127.0.0.1:1' });
    // An option's value is the next word, whatever it is (commander's rule): --time's check speaks.
    expect(parseServiceArgs(['system', 'service', '--time', '-1'])).toMatchObject({ opts: { time: '-1' } });
    expect(parseServiceArgs(['system', 'dial-stdio'])).toEqual({ globals: {}, command: 'dial-stdio' });
    expect(parseServiceArgs(['--root', '/s', 'system', 'dial-stdio', '-H', 'unix:///x'])).toEqual({ globals: { root: '/s' }, command: 'dial-stdio', host: 'unix:///x' });
  });

  it('leaves help, unknown or joined options, extra arguments and other commands to the CLI', () => {
    for (const argv of [
      ['system', 'service', '--help'],
      ['system', 'service', '-h'],
      ['system', 'service', '--bogus'],
      ['system', 'service', '--time=3'],
      ['system', 'service', '-t3'],
      ['system', 'service', '--time'],
      ['system', 'service', 'unix:///a', 'unix:///b'],
      ['system', 'service', '--', 'unix:///a'],
      ['system', 'dial-stdio', '--host'],
      ['system', 'dial-stdio', 'x'],
      ['system', 'dial-stdio', '-H', 'unix:///x', '-H', 'unix:///y'],
      ['--storage-driver', 'zfs', 'system', 'service'],
      ['--root=/s', 'system', 'service'],
      ['--root'],
      ['system', 'df'],
      ['system'],
      ['ps'],
      [],
    ]) {
      expect(parseServiceArgs(argv), argv.join(' ')).toBeUndefined();
    }
  });
});
