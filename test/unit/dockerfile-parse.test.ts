import { describe, expect, it } from 'vitest';
import type { CopyInstruction, Dockerfile, Instruction, RunInstruction } from '../../ts/build/dockerfile/ast';
import { parseDockerfile } from '../../ts/build/dockerfile/parse';
import { BurrowError } from '../../ts/errors';

const parse = (text: string) => parseDockerfile(text, 'Dockerfile');
/** The instructions of the only stage. */
const body = (text: string): Instruction[] => parse(text).stages[0]!.instructions;
const one = <T extends Instruction = Instruction>(line: string): T => body(`FROM scratch\n${line}\n`)[0] as T;

/** The error a Dockerfile fails with: its code and its message (file:line:col: ...). */
function failure(text: string): { code: string; message: string } {
  try {
    parse(text);
  } catch (e) {
    expect(e).toBeInstanceOf(BurrowError);
    return { code: (e as BurrowError).code, message: (e as BurrowError).message };
  }
  throw new Error('parsed without an error');
}
const fails = (text: string, where: string, what: RegExp | string) => {
  const f = failure(text);
  expect(f.code).toBe('EBUILD_PARSE');
  expect(f.message.startsWith(`Dockerfile:${where}: `), f.message).toBe(true);
  if (typeof what === 'string') expect(f.message).toContain(what);
  else expect(f.message).toMatch(what);
};

describe('parseDockerfile: lines, comments, directives', () => {
  it('keeps the directives at the top and ignores them later', () => {
    const df = parse('# syntax=docker/dockerfile:1.7\n# escape=`\n# check=skip=all\nFROM scratch\n# escape=\\\n');
    expect(df.directives).toEqual({ escape: '`', syntax: 'docker/dockerfile:1.7', check: 'skip=all' });
    // after a blank line, a comment or an instruction, `# escape=` is a comment
    expect(parse('\n# escape=`\nFROM scratch\n').directives.escape).toBe('\\');
    expect(parse('# hello\n# escape=`\nFROM scratch\n').directives.escape).toBe('\\');
    expect(parse('#ESCAPE = `\nFROM scratch\n').directives.escape).toBe('`');
  });

  it('rejects a bad or repeated directive with its line', () => {
    fails('# escape=x\nFROM scratch\n', '1:1', "invalid escape token 'x'");
    fails('# escape=\\\n# escape=`\nFROM scratch\n', '2:1', 'only one escape parser directive');
  });

  it('joins continuations, dropping comment and empty lines inside them, and keeps the position', () => {
    const run = one<RunInstruction>('RUN echo a \\\n  # inner comment\n\n   && echo b \\\n\t&& echo c');
    expect(run.command).toEqual({ form: 'shell', command: 'echo a    && echo b \t&& echo c', heredocs: [] });
    expect(run.pos).toEqual({ file: 'Dockerfile', line: 2, column: 1 });
    expect(run.original).toBe('RUN echo a    && echo b \t&& echo c');
  });

  it('continues lines with a backtick under # escape=`, and backslashes are plain', () => {
    const df = parse('# escape=`\nFROM scratch\nRUN dir c:\\ `\n  && echo x\nWORKDIR c:\\windows\\\n');
    const [run, wd] = df.stages[0]!.instructions;
    expect(run).toMatchObject({ kind: 'RUN', command: { form: 'shell', command: 'dir c:\\   && echo x' } });
    expect(wd).toMatchObject({ kind: 'WORKDIR', value: 'c:\\windows\\' });
  });

  it('takes instructions in any case, comments with leading spaces, CRLF and a BOM', () => {
    const df = parse('\uFEFFfrom scratch\r\n   # note\r\n  run  echo hi\r\nCoPy a b\r\n');
    const [run, copy] = df.stages[0]!.instructions;
    expect(run).toMatchObject({ kind: 'RUN', pos: { line: 3, column: 3 }, command: { command: 'echo hi' } });
    expect(copy).toMatchObject({ kind: 'COPY', sources: ['a'], dest: 'b' });
  });

  it('an escaped escape character at the end of a line does not continue it (BuildKit)', () => {
    const [a, b] = body('FROM scratch\nRUN echo a\\\\\nUSER x\\ \n  y\n');
    expect(a).toMatchObject({ kind: 'RUN', command: { command: 'echo a\\\\' } });
    expect(b).toMatchObject({ kind: 'USER', value: 'x  y' });
    // the escape character alone on a line continues too, and a continuation may end the file
    expect(body('FROM scratch\nRUN a \\\n\\\n b \\')).toMatchObject([{ command: { command: 'a  b' } }]);
  });

  it('flags take quotes and the escape character, as BuildKit\'s extractBuilderFlags', () => {
    expect(one('COPY --chown="app user" a b')).toMatchObject({ chown: 'app user' });
    expect(one('COPY --chown=a\\ b c d')).toMatchObject({ chown: 'a b', sources: ['c'], dest: 'd' });
    expect(parse('# escape=`\nFROM scratch\nCOPY --chown=a` b c d\n').stages[0]!.instructions[0]).toMatchObject({ chown: 'a b' });
    expect(one('COPY -- --not-a-flag /d')).toMatchObject({ sources: ['--not-a-flag'], dest: '/d', flags: {} });
  });

  it('a comment line ending in the escape character does not continue', () => {
    expect(body('FROM scratch\n# comment \\\nUSER x\n')).toMatchObject([{ kind: 'USER', value: 'x' }]);
  });
});

describe('parseDockerfile: stages and global ARGs', () => {
  it('collects ARGs before the first FROM and splits stages', () => {
    const df: Dockerfile = parse('ARG BASE=debian:12 OTHER\nFROM $BASE AS Build\nRUN make\nFROM --platform=$BUILDPLATFORM busybox\nCOPY --from=build /out /\n');
    expect(df.globalArgs).toHaveLength(1);
    expect(df.globalArgs[0]!.args).toEqual([{ name: 'BASE', default: 'debian:12' }, { name: 'OTHER' }]);
    expect(df.stages.map((s) => [s.index, s.name, s.from.image, s.from.platform, s.instructions.length])).toEqual([
      [0, 'build', '$BASE', undefined, 1],
      [1, undefined, 'busybox', '$BUILDPLATFORM', 1],
    ]);
  });

  it('rejects bad stage names, duplicates, and FROM with the wrong number of words', () => {
    fails('FROM a AS 1st\n', '1:11', 'invalid name for build stage: "1st"');
    fails('FROM a AS b$c\n', '1:11', 'invalid name for build stage');
    // reserved and duplicate names are only lint warnings in BuildKit
    expect(parse('FROM a AS scratch\nFROM b AS x\nFROM c AS X\n').stages.map((s) => s.name)).toEqual(['scratch', 'x', 'x']);
    fails('FROM a b\n', '1:6', 'FROM requires either one or three arguments');
    fails('FROM a FOR b\n', '1:8', 'FROM requires either one or three arguments');
    fails('FROM\n', '1:1', 'FROM requires either one or three arguments');
  });

  it('rejects instructions before FROM other than ARG, and a file without instructions', () => {
    fails('ARG X\n\n  RUN echo\nFROM scratch\n', '3:3', 'RUN before the first FROM');
    fails('', '1:1', 'no instructions');
    fails('# syntax=x\n\n# only comments\n', '1:1', 'no instructions');
    fails('ARG A\n', '1:1', 'no FROM');
  });
});

describe('parseDockerfile: instructions', () => {
  it('RUN: shell and exec forms; invalid JSON falls back to the shell form', () => {
    expect(one<RunInstruction>('RUN ["echo", "a b"]').command).toEqual({ form: 'exec', argv: ['echo', 'a b'] });
    expect(one<RunInstruction>("RUN ['echo']").command).toEqual({ form: 'shell', command: "['echo']", heredocs: [] });
    expect(one<RunInstruction>('RUN [ "unterminated"').command).toMatchObject({ form: 'shell' });
    fails('FROM scratch\nRUN ["a", 1]\n', '2:5', 'arrays must be comprised of strings only');
    fails('FROM scratch\nRUN\n', '2:1', 'RUN requires at least one argument');
  });

  it('RUN flags: --mount (CSV, aliases, defaults), --network, --security', () => {
    const run = one<RunInstruction>(
      'RUN --mount=type=cache,target=/root/.cache,id=pip,sharing=locked --mount=type=bind,from=build,source=/out,dst=/in,rw --mount=type=secret,id=tok,required --mount=type=tmpfs,destination=/t,size=64m --mount=target=/src --network=none --security=sandbox make',
    );
    expect(run.mounts).toEqual([
      { type: 'cache', target: '/root/.cache', id: 'pip', sharing: 'locked', readonly: false },
      { type: 'bind', from: 'build', source: '/out', target: '/in', readonly: false },
      { type: 'secret', id: 'tok', required: true, readonly: true },
      { type: 'tmpfs', target: '/t', size: '64m', readonly: false },
      { type: 'bind', target: '/src', readonly: true },
    ]);
    expect(run.network).toBe('none');
    expect(run.security).toBe('sandbox');
    expect(run.command).toMatchObject({ form: 'shell', command: 'make' });
    expect(run.flags.mount).toHaveLength(5);
    expect(one<RunInstruction>(`RUN --mount='type=cache,target=/x,ro,"id=a,b"' true`).mounts[0]).toEqual({ type: 'cache', target: '/x', id: 'a,b', readonly: true });
  });

  it('RUN flag errors name the flag and its column', () => {
    fails('FROM scratch\nRUN --mount=type=cahce,target=/x true\n', '2:5', 'unsupported mount type "cahce" (did you mean cache?)');
    fails('FROM scratch\nRUN --network=host --mount=type=cache,taget=/x true\n', '2:20', "unexpected key 'taget' in 'taget=/x' (did you mean target?)");
    fails('FROM scratch\nRUN --mount=type=secret true\n', '2:5', 'invalid secret mount. one of source, target required');
    fails('FROM scratch\nRUN --mount=type=secret,id=a,src=/f true\n', '2:5', "both source and id can't be set");
    fails('FROM scratch\nRUN --mount=type=secret,id=a,from=x true\n', '2:5', 'secret mount should not have a from');
    fails('FROM scratch\nRUN --mount=size=1m,type=tmpfs,target=/t true\n', '2:5', "unexpected key 'size' for mount type 'bind'");
    fails('FROM scratch\nRUN --mount=type=bind,target=/x,mode=0700 true\n', '2:5', 'mode not allowed for "bind" type mounts');
    fails('FROM scratch\nRUN --mount=type=cache,target=/x,mode=9 true\n', '2:5', 'invalid value 9 for mode');
    fails('FROM scratch\nRUN --mount=type=cache,target=/x,uid=me true\n', '2:5', 'invalid value me for uid');
    fails('FROM scratch\nRUN --mount=type=bind,from=$STAGE,target=/x true\n', '2:5', "'from' doesn't support variable expansion");
    fails('FROM scratch\nRUN --mount=type=cache,target=/x,sharing=lockd true\n', '2:5', 'unsupported sharing value "lockd" (did you mean locked?)');
    fails('FROM scratch\nRUN --mount=type=bind,target=/x,ro=maybe true\n', '2:5', 'invalid value for ro: maybe');
    // no target: BuildKit mounts at the working directory
    expect(one<RunInstruction>('RUN --mount=type=cache true').mounts).toEqual([{ type: 'cache', readonly: false }]);
    expect(one<RunInstruction>('RUN --mount=type=secret,id=tok,env=TOKEN,required=false --mount=type=ssh true').mounts).toEqual([
      { type: 'secret', id: 'tok', env: 'TOKEN', required: false, readonly: true },
      { type: 'ssh', readonly: true },
    ]);
    fails('FROM scratch\nRUN --mount=type=bind,target=/x,sharing=shared true\n', '2:5', 'invalid cache sharing set for bind mount');
    fails('FROM scratch\nRUN --mount=type=cache,target=/x,bogus true\n', '2:5', "invalid field 'bogus' must be a key=value pair");
    fails('FROM scratch\nRUN --network=bridge true\n', '2:5', 'invalid network mode "bridge"');
    fails('FROM scratch\nRUN --security=root true\n', '2:5', 'security "root" is not valid');
    fails('FROM scratch\nCOPY --link= a b\n', '2:6', 'missing a value on flag --link');
    fails('FROM scratch\nRUN --netwrk=none true\n', '2:5', 'RUN does not take the flag --netwrk (did you mean --network?)');
    fails('FROM scratch\nRUN --network true\n', '2:5', 'missing a value on flag --network');
    fails('FROM scratch\nRUN --network=none --network=host true\n', '2:20', 'duplicate flag');
  });

  it('COPY and ADD: sources, destination, flags, JSON form for names with spaces', () => {
    const copy = one<CopyInstruction>('COPY --from=build --chown=app:app --chmod=0755 --link --parents --exclude=*.md --exclude=tmp a b* /dst/');
    expect(copy).toMatchObject({ kind: 'COPY', sources: ['a', 'b*'], dest: '/dst/', from: 'build', chown: 'app:app', chmod: '0755', link: true, parents: true, exclude: ['*.md', 'tmp'] });
    expect(one<CopyInstruction>('COPY ["my file", "other one", "/d i r/"]')).toMatchObject({ sources: ['my file', 'other one'], dest: '/d i r/', link: false, exclude: [] });
    expect(one<CopyInstruction>('COPY --link=false a b').link).toBe(false);
    const add = one<CopyInstruction>('ADD --checksum=sha256:abc --keep-git-dir https://x/y.tar /y');
    expect(add).toMatchObject({ kind: 'ADD', sources: ['https://x/y.tar'], dest: '/y', checksum: 'sha256:abc', keepGitDir: true });
    fails('FROM scratch\nADD --from=x a b\n', '2:5', 'ADD does not take the flag --from');
    fails('FROM scratch\nCOPY --link --from=$STAGE a b\n', '2:13', 'variable expansion is not supported for --from');
    expect(one('COPY --from=0 a b')).toMatchObject({ from: '0' });
    fails('FROM scratch\nCOPY a\n', '2:6', 'COPY requires at least two arguments, but only one was provided');
    fails('FROM scratch\nCOPY\n', '2:1', 'COPY requires at least two arguments');
    fails('FROM scratch\nCOPY --link=maybe a b\n', '2:6', 'expecting boolean value');
    fails('FROM scratch\nCOPY --chmod=rwx a b\n', '2:6', 'invalid --chmod');
  });

  it('ENV and LABEL: legacy and key=value forms, quotes kept for the expansion', () => {
    expect(one('ENV a=1 b="two words" c=three\\ words d=')).toMatchObject({ kind: 'ENV', pairs: [['a', '1'], ['b', '"two words"'], ['c', 'three\\ words'], ['d', '']] });
    expect(one('ENV PATH /usr/local/bin:$PATH and more')).toMatchObject({ pairs: [['PATH', '/usr/local/bin:$PATH and more']] });
    expect(one('LABEL "com.example.vendor"="ACME Inc" version=1.0 description="a b \\" c"')).toMatchObject({
      kind: 'LABEL',
      pairs: [['"com.example.vendor"', '"ACME Inc"'], ['version', '1.0'], ['description', '"a b \\" c"']],
    });
    fails('FROM scratch\nENV a=1 b\n', '2:9', "can't find = in \"b\"");
    fails('FROM scratch\nENV =1\n', '2:5', 'ENV names can not be blank');
    fails('FROM scratch\nENV onlyname\n', '2:5', 'ENV must have two arguments');
    fails('FROM scratch\nLABEL\n', '2:1', 'LABEL requires at least one argument');
  });

  it('ARG, WORKDIR, USER, STOPSIGNAL, MAINTAINER, EXPOSE, VOLUME', () => {
    expect(one('ARG a b=1 c="x y"')).toMatchObject({ args: [{ name: 'a' }, { name: 'b', default: '1' }, { name: 'c', default: '"x y"' }] });
    expect(one('WORKDIR /a b')).toMatchObject({ kind: 'WORKDIR', value: '/a b' });
    expect(one('USER app:staff')).toMatchObject({ kind: 'USER', value: 'app:staff' });
    expect(one('STOPSIGNAL SIGKILL')).toMatchObject({ kind: 'STOPSIGNAL', value: 'SIGKILL' });
    expect(one('MAINTAINER Jane <j@x>')).toMatchObject({ kind: 'MAINTAINER', value: 'Jane <j@x>' });
    expect(one('EXPOSE 80 53/udp 8000-8010/tcp $PORT')).toMatchObject({ values: ['80', '53/udp', '8000-8010/tcp', '$PORT'] });
    expect(one('VOLUME ["/a", "/b c"]')).toMatchObject({ kind: 'VOLUME', values: ['/a', '/b c'] });
    expect(one('VOLUME /a /b')).toMatchObject({ values: ['/a', '/b'] });
    fails('FROM scratch\nEXPOSE 80 http\n', '2:11', 'invalid port in EXPOSE: http');
    fails('FROM scratch\nEXPOSE 80/tcpx\n', '2:8', 'invalid protocol');
    fails('FROM scratch\nWORKDIR\n', '2:1', 'WORKDIR requires exactly one argument');
    fails('FROM scratch\nARG =x\n', '2:5', 'ARG names can not be blank');
    fails('FROM scratch\nVOLUME [""]\n', '2:8', 'VOLUME specified can not be an empty string');
    fails('FROM scratch\nUSER --x=1 app\n', '2:6', 'USER does not take the flag --x');
  });

  it('CMD, ENTRYPOINT, SHELL', () => {
    expect(one('CMD ["/bin/app", "--flag"]')).toMatchObject({ kind: 'CMD', command: { form: 'exec', argv: ['/bin/app', '--flag'] } });
    expect(one('CMD []')).toMatchObject({ command: { form: 'exec', argv: [] } });
    expect(one('ENTRYPOINT exec app "$@"')).toMatchObject({ kind: 'ENTRYPOINT', command: { form: 'shell', command: 'exec app "$@"', heredocs: [] } });
    expect(one('SHELL ["/bin/bash", "-o", "pipefail", "-c"]')).toMatchObject({ argv: ['/bin/bash', '-o', 'pipefail', '-c'] });
    fails('FROM scratch\nSHELL /bin/bash -c\n', '2:7', 'SHELL requires the arguments to be in JSON form');
    fails('FROM scratch\nCMD\n', '2:1', 'CMD requires at least one argument');
  });

  it('HEALTHCHECK: CMD in both forms, NONE, the options', () => {
    expect(one('HEALTHCHECK --interval=30s --timeout=3s --start-period=1m30s --start-interval=2s --retries=3 CMD curl -f http://localhost/ || exit 1')).toMatchObject({
      test: ['CMD-SHELL', 'curl -f http://localhost/ || exit 1'],
      interval: '30s',
      timeout: '3s',
      startPeriod: '1m30s',
      startInterval: '2s',
      retries: 3,
    });
    expect(one('HEALTHCHECK cmd ["/bin/check", "x"]')).toMatchObject({ test: ['CMD', '/bin/check', 'x'] });
    expect(one('HEALTHCHECK NONE')).toMatchObject({ test: ['NONE'] });
    fails('FROM scratch\nHEALTHCHECK NONE x\n', '2:18', 'HEALTHCHECK NONE takes no arguments');
    fails('FROM scratch\nHEALTHCHECK RUN x\n', '2:13', 'Unknown type "RUN" in HEALTHCHECK (try CMD)');
    fails('FROM scratch\nHEALTHCHECK CMD\n', '2:13', 'Missing command after HEALTHCHECK CMD');
    fails('FROM scratch\nHEALTHCHECK --interval=5 CMD x\n', '2:13', 'invalid duration --interval=5');
    fails('FROM scratch\nHEALTHCHECK --timeout=10us CMD x\n', '2:13', 'cannot be less than 1ms');
    fails('FROM scratch\nHEALTHCHECK --retries=-1 CMD x\n', '2:13', '--retries cannot be negative');
    fails('FROM scratch\nHEALTHCHECK --retires=1 CMD x\n', '2:13', '(did you mean --retries?)');
  });

  it('ONBUILD keeps the trigger and parses it; FROM, MAINTAINER and ONBUILD are not triggers', () => {
    expect(one('ONBUILD COPY --chown=1 . /app/src')).toMatchObject({
      kind: 'ONBUILD',
      trigger: 'COPY --chown=1 . /app/src',
      instruction: { kind: 'COPY', sources: ['.'], dest: '/app/src', chown: '1', pos: { line: 2, column: 9 } },
    });
    fails('FROM scratch\nONBUILD ONBUILD RUN x\n', '2:9', 'Chaining ONBUILD');
    fails('FROM scratch\nONBUILD FROM x\n', '2:9', "FROM isn't allowed as an ONBUILD trigger");
    fails('FROM scratch\nONBUILD MAINTAINER me\n', '2:9', "MAINTAINER isn't allowed");
    fails('FROM scratch\nONBUILD\n', '2:1', 'ONBUILD requires at least one argument');
    fails('FROM scratch\nONBUILD RUNN x\n', '2:9', 'unknown instruction: RUNN (did you mean RUN?)');
  });

  it('unknown instructions, with a suggestion for near misses', () => {
    fails('FROM scratch\n  COPPY a b\n', '2:3', 'unknown instruction: COPPY (did you mean COPY?)');
    fails('FROM scratch\nworkdri /x\n', '2:1', 'unknown instruction: workdri (did you mean workdir?)');
    fails('FROM scratch\nExpos 80\n', '2:1', 'unknown instruction: Expos (did you mean expose?)');
    const f = failure('FROM scratch\nFLURB x\n');
    expect(f.message).toBe('Dockerfile:2:1: unknown instruction: FLURB');
  });
});

describe('parseDockerfile: words are kept for the expansion', () => {
  it('a bad ${ or quote is not a parse error: BuildKit finds it when it expands, in the stages it builds', () => {
    expect(one('WORKDIR /a/${B')).toMatchObject({ value: '/a/${B' });
    expect(one('COPY "my file" /x')).toMatchObject({ sources: ['"my', 'file"'], dest: '/x' });
    expect(one("ENV name='a\\'b'")).toMatchObject({ pairs: [['name', "'a\\'b'"]] });
    expect(one('USER ${APP_USER:?set APP_USER}')).toMatchObject({ value: '${APP_USER:?set APP_USER}' });
  });
});

describe('parseDockerfile: heredocs', () => {
  it('RUN <<EOF: the body, expanded unless the delimiter is quoted', () => {
    const [a, b, c] = body('FROM scratch\nRUN <<EOF\necho $HOME\n  indented\nEOF\nRUN <<"EOF"\n$x\nEOF\nRUN <<E\'O\'F\nx\nEOF\n') as RunInstruction[];
    expect(a!.command).toEqual({ form: 'shell', command: '<<EOF', heredocs: [{ name: 'EOF', content: 'echo $HOME\n  indented\n', expand: true }] });
    expect(b!.command).toMatchObject({ heredocs: [{ name: 'EOF', content: '$x\n', expand: false }] });
    expect(c!.command).toMatchObject({ heredocs: [{ name: 'EOF', expand: false }] });
  });

  it('<<- strips leading tabs of the body and of the terminator', () => {
    const run = one<RunInstruction>('RUN <<-EOF\n\techo a\n\t\t\techo b\n  echo c\n\tEOF');
    expect(run.command).toMatchObject({ heredocs: [{ name: 'EOF', content: 'echo a\necho b\n  echo c\n' }] });
  });

  it('several heredocs on one line, a descriptor, a program reading stdin', () => {
    const [a, b] = body('FROM scratch\nRUN python3 <<PY 3<<CONF\nprint(1)\nPY\nkey=1\nCONF\nRUN cat <<A <<B > /out\na\nA\nb\nB\nUSER x\n') as RunInstruction[];
    expect(a!.command).toEqual({
      form: 'shell',
      command: 'python3 <<PY 3<<CONF',
      heredocs: [
        { name: 'PY', content: 'print(1)\n', expand: true },
        { name: 'CONF', content: 'key=1\n', expand: true, fd: 3 },
      ],
    });
    expect(b!.command).toMatchObject({ heredocs: [{ name: 'A', content: 'a\n' }, { name: 'B', content: 'b\n' }] });
  });

  it('COPY <<EOF /file: inline files beside ordinary sources', () => {
    const copy = one<CopyInstruction>('COPY --chmod=0644 <<one <<-"two" src /etc/\nfirst\none\n\tsecond\n\ttwo');
    expect(copy).toMatchObject({
      sources: ['src'],
      dest: '/etc/',
      heredocs: [
        { name: 'one', content: 'first\n', expand: true },
        { name: 'two', content: 'second\n', expand: false },
      ],
    });
    fails('FROM scratch\nCOPY a <<EOF\nx\nEOF\n', '2:8', 'COPY cannot accept a heredoc as a destination');
  });

  it('no heredoc in exec form, in quotes, or glued to a word; an empty body', () => {
    expect(one<RunInstruction>('RUN ["cat", "<<EOF"]').command).toEqual({ form: 'exec', argv: ['cat', '<<EOF'] });
    expect(one<RunInstruction>("RUN echo '<<EOF'").command).toMatchObject({ heredocs: [] });
    expect(one<RunInstruction>('RUN echo a<<EOF').command).toMatchObject({ heredocs: [] });
    expect(one<RunInstruction>('RUN cat <<EOF\nEOF').command).toMatchObject({ heredocs: [{ name: 'EOF', content: '' }] });
  });

  it('blanks between << and the delimiter, and CRLF bodies kept as written (BuildKit)', () => {
    expect(one<RunInstruction>('RUN cat << EOF\nx\nEOF').command).toMatchObject({ heredocs: [{ name: 'EOF', content: 'x\n' }] });
    const crlf = parse('FROM scratch\r\nCOPY <<EOF /f\r\na\r\nEOF\r\nUSER u\r\n').stages[0]!.instructions;
    expect(crlf[0]).toMatchObject({ heredocs: [{ name: 'EOF', content: 'a\r\n' }] });
    expect(crlf[1]).toMatchObject({ kind: 'USER', value: 'u' });
  });

  it('ONBUILD with a heredoc: the trigger carries the body, as BuildKit writes it in OnBuild', () => {
    const ins = body('FROM scratch\nONBUILD RUN <<-EOF\n\techo hi\n\tEOF\nUSER u\n');
    expect(ins[0]).toMatchObject({
      kind: 'ONBUILD',
      trigger: 'RUN <<-EOF\n\techo hi\nEOF',
      instruction: { kind: 'RUN', command: { form: 'shell', command: '<<-EOF', heredocs: [{ name: 'EOF', content: 'echo hi\n' }] } },
    });
    expect(ins[1]).toMatchObject({ kind: 'USER', pos: { line: 5 } });
  });

  it("an ONBUILD trigger parses back to the same instruction in the child's build", () => {
    const parent = body('FROM scratch\nONBUILD COPY --chown=1:1 <<EOF /etc/x\nhello $NAME\nEOF\nONBUILD RUN make \\\n  install\n');
    for (const on of parent) {
      if (on.kind !== 'ONBUILD') throw new Error('not ONBUILD');
      const child = body(`FROM scratch\n${on.trigger}\n`)[0]!;
      const { pos: _p1, ...a } = child as Instruction & { pos: unknown };
      const { pos: _p2, ...b } = on.instruction as Instruction & { pos: unknown };
      expect(a).toEqual(b);
    }
  });

  it('a delimiter with a $ in it is taken as written (BuildKit lexes the line with unset variables kept)', () => {
    expect(one<RunInstruction>('RUN cat <<$END\nx\n$END').command).toMatchObject({ heredocs: [{ name: '$END', content: 'x\n', expand: true }] });
  });

  it('an unterminated heredoc names the delimiter and where it started', () => {
    fails('FROM scratch\nRUN echo && cat <<END\nline\nEND \n', '2:17', 'unterminated heredoc <<END');
  });

  it('the lines after a heredoc are instructions again, with their own line numbers', () => {
    const ins = body('FROM scratch\nRUN <<EOF\n# not a comment\nFROM inside\nEOF\nUSER u\n');
    expect(ins[0]).toMatchObject({ command: { heredocs: [{ content: '# not a comment\nFROM inside\n' }] } });
    expect(ins[1]).toMatchObject({ kind: 'USER', pos: { line: 6, column: 1 } });
  });
});
