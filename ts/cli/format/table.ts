/** Docker-style output helpers: aligned tables, human sizes and ages, and `--format` templates. */

export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]! + 3))).join('').trimEnd();
  return [line(headers), ...rows.map(line)].join('\n') + '\n';
}

export function humanSize(bytes: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let v = bytes;
  let i = 0;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${i === 0 ? v : v.toPrecision(3)}${units[i]}`;
}

// Docker's time words ("Up 5 minutes", "27 minutes ago") are shared with the engine: ts/format/age.ts.
export { ago, humanAge } from '../../format/age';

/**
 * A value as Go's text/template prints it (fmt's %v), which Docker's and podman's --format
 * use: a list `[a b]`, a map `map[k:v]` with sorted keys, nil `<nil>` inside a value and
 * `<no value>` for a missing or nil field, numbers and booleans as they are.
 */
export function goValue(v: unknown, top = true): string {
  if (v === undefined || v === null) return top ? '<no value>' : '<nil>';
  if (Array.isArray(v)) return `[${v.map((x) => goValue(x, false)).join(' ')}]`;
  if (typeof v === 'object') {
    const o = v as Record<string, unknown>;
    return `map[${Object.keys(o)
      .sort()
      .map((k) => `${k}:${goValue(o[k], false)}`)
      .join(' ')}]`;
  }
  // What is left is a scalar: values come from JSON and records, which hold no functions.
  const scalar = v as string | number | boolean | bigint;
  return String(scalar);
}

/**
 * A subset of Go templates as Docker's --format uses them: `{{.Field}}`, `{{.A.B}}`,
 * `{{json .}}`, `{{json .Field}}`, `{{upper .X}}`, `{{lower .X}}`, `\t`, the `table` prefix, and
 * `{{range .X}}…{{end}}` (what `inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}'`
 * needs): the body once per element of a list, or per value of a map in key order, as Go ranges.
 */
export function render(template: string, obj: Record<string, unknown>): string {
  return renderIn(template, obj);
}

const RANGE_RE = /\{\{\s*range\s+(\.[A-Za-z0-9_.]*|\.)\s*\}\}/;
const RANGE_OR_END_RE = /\{\{\s*(range\s+[^}]*|end)\s*\}\}/g;

function field(dot: unknown, p: string): unknown {
  return p === '.' ? dot : p.replace(/^\./, '').split('.').reduce<unknown>((o, k) => (o && typeof o === 'object' ? (o as Record<string, unknown>)[k] : undefined), dot);
}

/** The template with `.` bound to `dot`: ranges first (nested ones by recursion), then fields. */
function renderIn(template: string, dot: unknown): string {
  let out = '';
  let rest = template;
  for (let m = RANGE_RE.exec(rest); m; m = RANGE_RE.exec(rest)) {
    // Its {{end}}: the first that closes as many ranges as opened after this one.
    RANGE_OR_END_RE.lastIndex = m.index + m[0].length;
    let depth = 1;
    let end: RegExpExecArray | null = null;
    for (let t = RANGE_OR_END_RE.exec(rest); t; t = RANGE_OR_END_RE.exec(rest)) {
      depth += t[1] === 'end' ? -1 : 1;
      if (depth === 0) {
        end = t;
        break;
      }
    }
    // Without its {{end}} it stays text, as the fields around it are printed.
    if (!end) break;
    out += renderFields(rest.slice(0, m.index), dot);
    const v = field(dot, m[1]!);
    const items = Array.isArray(v) ? v : v && typeof v === 'object' ? Object.keys(v).sort().map((k) => (v as Record<string, unknown>)[k]) : [];
    const body = rest.slice(m.index + m[0].length, end.index);
    for (const item of items) out += renderIn(body, item);
    rest = rest.slice(end.index + end[0].length);
  }
  return out + renderFields(rest, dot);
}

function renderFields(template: string, dot: unknown): string {
  const str = (v: unknown): string => goValue(v);
  return template
    .replace(/\\t/g, '\t')
    .replace(/\\n/g, '\n')
    .replace(/\{\{\s*(json|upper|lower)?\s*(\.[A-Za-z0-9_.]*|\.)\s*\}\}/g, (_m, fn: string | undefined, p: string) => {
      const v = field(dot, p);
      if (fn === 'json') return JSON.stringify(v ?? null);
      if (fn === 'upper') return str(v).toUpperCase();
      if (fn === 'lower') return str(v).toLowerCase();
      return str(v);
    });
}

/** Prints rows with a template: `table …` keeps a header line, as Docker does. */
export function formatRows(template: string, rows: Record<string, unknown>[], headers: Record<string, string> = {}): string {
  if (template === 'json') return rows.map((r) => JSON.stringify(r)).join('\n') + (rows.length ? '\n' : '');
  const isTable = template.startsWith('table ');
  // A typed "\t" separates columns in the header line too.
  const t = (isTable ? template.slice(6) : template).replace(/\\t/g, '\t');
  const lines = rows.map((r) => render(t, r));
  if (isTable) {
    const head = t.replace(/\{\{\s*(?:json|upper|lower)?\s*\.([A-Za-z0-9_]+)[^}]*\}\}/g, (_m, k: string) => headers[k] ?? k.toUpperCase());
    const cells = [head, ...lines].map((l) => l.split('\t'));
    return table(cells[0]!, cells.slice(1));
  }
  return lines.join('\n') + (lines.length ? '\n' : '');
}
