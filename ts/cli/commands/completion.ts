/**
 * `burrow completion bash|zsh`: a completion script generated from the commander program
 * itself (commands, aliases, flags, which flags take a value, their choices), so it cannot
 * drift from the CLI. Container names and image references are completed at TAB time by
 * calling burrow (`ps -a --format '{{.Names}}'`, `images --format …`) with the same --root and
 * --runroot the command line has.
 *
 *   bash:  source <(burrow completion bash)      or save it in ~/.local/share/bash-completion/completions/burrow
 *   zsh:   burrow completion zsh > "${fpath[1]}/_burrow"      (then compinit)
 */
import type { Command } from 'commander';
import { BurrowError } from '../../errors';
import { LOG_DRIVERS, NETWORK_MODES, USER_FALLBACKS, USERNS_MODES } from '../../config/config';

/** What a positional argument or a flag's value completes to. */
type Kind = 'containers' | 'images' | 'objects' | 'files' | 'dirs' | 'devices' | 'cp' | 'commands' | 'rest' | 'none' | { words: string[] };

interface OptModel {
  flags: string[];
  takesValue: boolean;
  kind: Kind;
  desc: string;
}

interface CmdModel {
  /** "burrow", "burrow run", "burrow container ls". */
  key: string;
  names: string[];
  desc: string;
  opts: OptModel[];
  args: Kind[];
  variadic: boolean;
  subs: CmdModel[];
}

const SIGNALS = ['KILL', 'TERM', 'INT', 'HUP', 'QUIT', 'USR1', 'USR2', 'STOP', 'CONT'];

/** Value completions by long flag, where commander has no choices for them. */
const VALUES: Record<string, Kind> = {
  '--root': 'dirs',
  '--runroot': 'dirs',
  '--volume': 'files',
  '--env-file': 'files',
  '--init-path': 'files',
  '--output': 'files',
  '--input': 'files',
  '--digestfile': 'files',
  '--device': 'devices',
  '--userns': { words: USERNS_MODES },
  '--user-fallback': { words: USER_FALLBACKS },
  '--network': { words: NETWORK_MODES },
  '--net': { words: NETWORK_MODES },
  '--log-driver': { words: LOG_DRIVERS },
  '--pull': { words: ['always', 'missing', 'never'] },
  '--group-add': { words: ['keep-groups'] },
  '--cgroups': { words: ['enabled', 'disabled'] },
  '--security-opt': { words: ['no-new-privileges', 'seccomp=unconfined', 'seccomp='] },
  '--signal': { words: SIGNALS },
  '--stop-signal': { words: SIGNALS.map((s) => `SIG${s}`) },
  '--type': { words: ['container', 'image'] },
};

/** What a positional argument completes to, by its name in the command's definition. */
function argKind(name: string): Kind {
  if (/^containers?$/.test(name)) return 'containers';
  if (/^(images?|source)$/.test(name)) return 'images';
  if (name === 'names') return 'objects';
  if (name === 'src' || name === 'dest') return 'cp';
  if (name === 'file') return 'files';
  if (name === 'command' || name === 'ps-options') return 'rest';
  return 'none';
}

function model(cmd: Command, parentKey: string | undefined): CmdModel {
  const key = parentKey === undefined ? 'burrow' : `${parentKey} ${cmd.name()}`;
  const opts: OptModel[] = cmd.options
    .filter((o) => !o.hidden)
    .map((o) => {
      const flags = [o.short, o.long].filter((f): f is string => !!f);
      const takesValue = o.required || o.optional;
      const kind: Kind = o.argChoices ? { words: o.argChoices } : takesValue ? (VALUES[o.long ?? ''] ?? 'none') : 'none';
      return { flags, takesValue, kind, desc: o.description };
    });
  // Commander's help flag; -h only where no option of the command claims it (run's --hostname).
  const helpFlags = opts.some((o) => o.flags.includes('-h')) ? ['--help'] : ['-h', '--help'];
  opts.push({ flags: helpFlags, takesValue: false, kind: 'none', desc: 'display help' });
  const args = cmd.registeredArguments.map((a) => argKind(a.name()));
  const subs = cmd.commands.map((c) => model(c, key));
  if (parentKey === undefined) {
    subs.push({ key: 'burrow help', names: ['help'], desc: 'display help for a command', opts: [], args: ['commands'], variadic: false, subs: [] });
  }
  return { key, names: [cmd.name(), ...cmd.aliases()], desc: cmd.description(), opts, args, variadic: cmd.registeredArguments.at(-1)?.variadic ?? false, subs };
}

function all(m: CmdModel): CmdModel[] {
  return [m, ...m.subs.flatMap(all)];
}

function kindWords(k: Kind): string {
  return typeof k === 'object' ? `words:${k.words.join(' ')}` : k;
}

const bashQ = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

function bash(root: CmdModel): string {
  const cmds = all(root);
  const assoc = (name: string, f: (c: CmdModel) => string | undefined) =>
    `declare -gA ${name}=(\n${cmds
      .map((c) => [c.key, f(c)] as const)
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => `  [${bashQ(k)}]=${bashQ(v!)}`)
      .join('\n')}\n)`;
  // "KEY NAME" -> the sub-command's key (aliases included).
  const canon: string[] = [];
  for (const c of cmds) for (const s of c.subs) for (const n of s.names) canon.push(`  [${bashQ(`${c.key} ${n}`)}]=${bashQ(s.key)}`);
  // "KEY FLAG" -> what its value completes to (only for flags that take one).
  const values: string[] = [];
  for (const c of cmds) for (const o of c.opts) if (o.takesValue) for (const f of o.flags) values.push(`  [${bashQ(`${c.key} ${f}`)}]=${bashQ(kindWords(o.kind))}`);
  return `# bash completion for burrow, generated by \`burrow completion bash\` from the CLI's own definition.
# Use: source <(burrow completion bash), or save it as ~/.local/share/bash-completion/completions/burrow
${assoc('_burrow_opts', (c) => c.opts.flatMap((o) => o.flags).join(' '))}
${assoc('_burrow_subs', (c) => (c.subs.length ? c.subs.flatMap((s) => s.names).join(' ') : undefined))}
${assoc('_burrow_args', (c) => c.args.map(kindWords).join(','))}
${assoc('_burrow_variadic', (c) => (c.variadic ? '1' : undefined))}
declare -gA _burrow_canon=(
${canon.join('\n')}
)
declare -gA _burrow_values=(
${values.join('\n')}
)

# Container names or image references, from the store the command line names.
_burrow_dynamic() {
  local -a g=()
  local j
  for ((j = 1; j < \${#_b_words[@]}; j++)); do
    case \${_b_words[j]} in
      --root | --runroot) g+=("\${_b_words[j]}" "\${_b_words[j + 1]}") ;;
      --root=* | --runroot=*) g+=("\${_b_words[j]}") ;;
    esac
  done
  case $1 in
    containers) "\${_b_words[0]}" "\${g[@]}" ps -a --format '{{.Names}}' 2>/dev/null ;;
    images) "\${_b_words[0]}" "\${g[@]}" images --format '{{.Repository}}:{{.Tag}}' 2>/dev/null | grep -v '<none>' ;;
  esac
}

# Fills COMPREPLY for a kind ("containers", "files", "words:a b c"…) and the word $2.
_burrow_kind() {
  local cur=$2
  case $1 in
    containers | images) COMPREPLY=($(compgen -W "$(_burrow_dynamic "$1")" -- "$cur")) ;;
    objects) COMPREPLY=($(compgen -W "$(_burrow_dynamic containers; _burrow_dynamic images)" -- "$cur")) ;;
    cp) COMPREPLY=($(compgen -W "$(_burrow_dynamic containers | sed 's/$/:/')" -- "$cur") $(compgen -f -- "$cur")) ;;
    files) compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -f -- "$cur")) ;;
    dirs) compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -d -- "$cur")) ;;
    devices) compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -f -- "\${cur:-/dev/}")) ;;
    commands) COMPREPLY=($(compgen -W "\${_burrow_subs[burrow]}" -- "$cur")) ;;
    words:*) COMPREPLY=($(compgen -W "\${1#words:}" -- "$cur")) ;;
    *) COMPREPLY=() ;;
  esac
}

_burrow() {
  # Words as the user sees them: bash splits "name:tag" and "--flag=value" at : and = (in
  # COMP_WORDBREAKS); glue back what was typed without a space between.
  local -a _b_words=()
  local _b_cword=0 i w start end=-1 pos=0 rest pre
  for ((i = 0; i < \${#COMP_WORDS[@]}; i++)); do
    w=\${COMP_WORDS[i]}
    if [[ -z $w ]]; then
      start=$COMP_POINT
    else
      rest=\${COMP_LINE:pos}
      pre=\${rest%%"$w"*}
      start=$((pos + \${#pre}))
    fi
    if ((i > 1 && start == end)) && [[ $w == [:=] || \${COMP_WORDS[i - 1]} == [:=] ]]; then
      _b_words[\${#_b_words[@]} - 1]+=$w
    else
      _b_words+=("$w")
    fi
    end=$((start + \${#w}))
    pos=$end
    ((i == COMP_CWORD)) && _b_cword=$((\${#_b_words[@]} - 1))
  done
  local cur=\${_b_words[_b_cword]} prev=\${_b_words[_b_cword - 1]}
  # What bash will replace: the current raw word, or nothing right after a : or =.
  local raw=\${COMP_WORDS[COMP_CWORD]}
  [[ $raw == [:=] ]] && raw=
  local strip=\${cur%"$raw"}

  local key=burrow
  i=1
  while ((i < _b_cword)); do
    w=\${_b_words[i]}
    if [[ $w == -* ]]; then
      [[ $w != *=* && -n \${_burrow_values["$key $w"]+x} ]] && ((i++))
      ((i++))
      continue
    fi
    if [[ -n \${_burrow_canon["$key $w"]+x} ]]; then
      key=\${_burrow_canon["$key $w"]}
      ((i++))
      continue
    fi
    break
  done

  # The value of a flag: "--flag value" or "--flag=value".
  if [[ $cur == -*=* && -n \${_burrow_values["$key \${cur%%=*}"]+x} ]]; then
    _burrow_kind "\${_burrow_values["$key \${cur%%=*}"]}" "\${cur#*=}"
    COMPREPLY=("\${COMPREPLY[@]/#/\${cur%%=*}=}")
  elif [[ $prev == -* && $prev != *=* && -n \${_burrow_values["$key $prev"]+x} ]]; then
    _burrow_kind "\${_burrow_values["$key $prev"]}" "$cur"
  else
    # Which positional argument this is (flags and their values do not count).
    local n=0
    local -a kinds
    IFS=, read -r -a kinds <<<"\${_burrow_args[$key]}"
    local restmode=0
    while ((i < _b_cword)); do
      w=\${_b_words[i]}
      if [[ $restmode == 0 && $w == -* ]]; then
        [[ $w != *=* && -n \${_burrow_values["$key $w"]+x} ]] && ((i++))
      else
        ((n++))
        # After the image of run/create, everything is the container's command line.
        [[ \${kinds[n]:-} == rest ]] && restmode=1
      fi
      ((i++))
    done
    if ((restmode)); then
      COMPREPLY=()
    elif [[ $cur == -* ]]; then
      COMPREPLY=($(compgen -W "\${_burrow_opts[$key]}" -- "$cur"))
    elif [[ -n \${_burrow_subs[$key]+x} ]] && ((n == 0)); then
      COMPREPLY=($(compgen -W "\${_burrow_subs[$key]}" -- "$cur"))
    else
      local k=\${kinds[n]:-}
      if [[ -z $k && -n \${_burrow_variadic[$key]+x} && \${#kinds[@]} -gt 0 ]]; then k=\${kinds[\${#kinds[@]} - 1]}; fi
      _burrow_kind "\${k:-none}" "$cur"
    fi
  fi
  # Bash replaces only the part after the last : or =; drop what precedes it.
  if [[ -n $strip ]]; then
    COMPREPLY=("\${COMPREPLY[@]#"$strip"}")
  fi
}
complete -F _burrow burrow
`;
}

const zshQ = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
const descEntry = (name: string, desc: string) => `${name.replace(/\\/g, '\\\\').replace(/:/g, '\\:')}:${desc.replace(/\n/g, ' ')}`;

function zsh(root: CmdModel): string {
  const cmds = all(root);
  const assoc = (name: string, f: (c: CmdModel) => string | undefined) =>
    `typeset -gA ${name}\n${name}=(\n${cmds
      .map((c) => [c.key, f(c)] as const)
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => `  ${zshQ(k)} ${zshQ(v!)}`)
      .join('\n')}\n)`;
  const canon: string[] = [];
  for (const c of cmds) for (const s of c.subs) for (const n of s.names) canon.push(`  ${zshQ(`${c.key} ${n}`)} ${zshQ(s.key)}`);
  const values: string[] = [];
  for (const c of cmds) for (const o of c.opts) if (o.takesValue) for (const f of o.flags) values.push(`  ${zshQ(`${c.key} ${f}`)} ${zshQ(kindWords(o.kind))}`);
  return `#compdef burrow
# zsh completion for burrow, generated by \`burrow completion zsh\` from the CLI's own definition.
# Use: burrow completion zsh > "\${fpath[1]}/_burrow" (then compinit), or source it after compinit.
${assoc('_burrow_opts', (c) => c.opts.flatMap((o) => o.flags.map((f) => descEntry(f, o.desc))).join('\n'))}
${assoc('_burrow_subs', (c) => (c.subs.length ? c.subs.flatMap((s) => s.names.map((n) => descEntry(n, s.desc))).join('\n') : undefined))}
${assoc('_burrow_args', (c) => c.args.map(kindWords).join(','))}
${assoc('_burrow_variadic', (c) => (c.variadic ? '1' : undefined))}
typeset -gA _burrow_canon
_burrow_canon=(
${canon.join('\n')}
)
typeset -gA _burrow_values
_burrow_values=(
${values.join('\n')}
)

_burrow_dynamic() {
  local -a g
  local j
  for (( j = 2; j < CURRENT; j++ )); do
    case \${words[j]} in
      (--root|--runroot) g+=(\${words[j]} \${words[j+1]}) ;;
      (--root=*|--runroot=*) g+=(\${words[j]}) ;;
    esac
  done
  case $1 in
    (containers) \${(Q)words[1]} $g ps -a --format '{{.Names}}' 2>/dev/null ;;
    (images) \${(Q)words[1]} $g images --format '{{.Repository}}:{{.Tag}}' 2>/dev/null | grep -v '<none>' ;;
  esac
}

_burrow_kind() {
  local -a list
  case $1 in
    (containers|images) list=(\${(f)"$(_burrow_dynamic $1)"}); compadd -a list ;;
    (objects) list=(\${(f)"$(_burrow_dynamic containers; _burrow_dynamic images)"}); compadd -a list ;;
    (cp) list=(\${(f)"$(_burrow_dynamic containers)"}); compadd -S ':' -q -a list; _files ;;
    (files) _files ;;
    (dirs) _files -/ ;;
    (devices) _files ;;
    (commands) list=(\${(f)_burrow_subs[burrow]}); _describe -t commands 'burrow command' list ;;
    (words:*) list=(\${=1#words:}); compadd -a list ;;
  esac
}

_burrow() {
  local key=burrow i=2 w cur=\${words[CURRENT]} prev=\${words[CURRENT-1]}
  while (( i < CURRENT )); do
    w=\${words[i]}
    if [[ $w == -* ]]; then
      [[ $w != *=* && -n \${_burrow_values[$key $w]} ]] && (( i++ ))
      (( i++ ))
      continue
    fi
    if [[ -n \${_burrow_canon[$key $w]} ]]; then
      key=\${_burrow_canon[$key $w]}
      (( i++ ))
      continue
    fi
    break
  done
  if [[ $cur == -*=* && -n \${_burrow_values[$key \${cur%%=*}]} ]]; then
    compset -P '*='
    _burrow_kind \${_burrow_values[$key \${cur%%=*}]}
    return
  fi
  if [[ $prev == -* && $prev != *=* && -n \${_burrow_values[$key $prev]} ]]; then
    _burrow_kind \${_burrow_values[$key $prev]}
    return
  fi
  local -a kinds list
  kinds=(\${(s:,:)_burrow_args[$key]})
  local n=0 restmode=0
  while (( i < CURRENT )); do
    w=\${words[i]}
    if (( ! restmode )) && [[ $w == -* ]]; then
      [[ $w != *=* && -n \${_burrow_values[$key $w]} ]] && (( i++ ))
    else
      (( n++ ))
      [[ \${kinds[n+1]} == rest ]] && restmode=1
    fi
    (( i++ ))
  done
  (( restmode )) && return 1
  if [[ $cur == -* ]]; then
    list=(\${(f)_burrow_opts[$key]})
    _describe -t options 'option' list
  elif [[ -n \${_burrow_subs[$key]} ]] && (( n == 0 )); then
    list=(\${(f)_burrow_subs[$key]})
    _describe -t commands 'command' list
  else
    local k=\${kinds[n+1]}
    [[ -z $k && -n \${_burrow_variadic[$key]} ]] && k=\${kinds[-1]}
    _burrow_kind \${k:-none}
  fi
}

if [[ $funcstack[1] == _burrow ]]; then
  _burrow "$@"
else
  compdef _burrow burrow
fi
`;
}

export function completionScript(program: Command, shell: string): string {
  const root = model(program, undefined);
  if (shell === 'bash') return bash(root);
  if (shell === 'zsh') return zsh(root);
  throw new BurrowError('EUSAGE', `completion: unsupported shell ${shell} (bash or zsh)`);
}
