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

/**
 * How long ago, in the words of Docker's go-units HumanDuration ("Less than a second",
 * "About a minute", "27 minutes", "2 hours", "3 days", "5 weeks", "4 months", "2 years"), with
 * its rounding: seconds and minutes cut, hours rounded. `N/A` without a time.
 */
export function humanAge(iso: string | undefined, now = Date.now()): string {
  if (!iso || Number.isNaN(Date.parse(iso))) return 'N/A';
  const ms = Math.max(0, now - Date.parse(iso));
  const seconds = Math.floor(ms / 1000);
  if (seconds < 1) return 'Less than a second';
  if (seconds === 1) return '1 second';
  if (seconds < 60) return `${seconds} seconds`;
  const minutes = Math.floor(ms / 60_000);
  if (minutes === 1) return 'About a minute';
  if (minutes < 60) return `${minutes} minutes`;
  const hours = Math.floor(ms / 3_600_000 + 0.5);
  if (hours === 1) return 'About an hour';
  if (hours < 48) return `${hours} hours`;
  if (hours < 24 * 7 * 2) return `${Math.floor(hours / 24)} days`;
  if (hours < 24 * 30 * 2) return `${Math.floor(hours / 24 / 7)} weeks`;
  if (hours < 24 * 365 * 2) return `${Math.floor(hours / 24 / 30)} months`;
  return `${Math.floor(Math.floor(ms / 3_600_000) / 24 / 365)} years`;
}

/** Docker's CREATED column of `images` and `ps` ("27 minutes ago"); `N/A` without a time. */
export function ago(iso: string | undefined, now = Date.now()): string {
  const d = humanAge(iso, now);
  return d === 'N/A' ? d : `${d} ago`;
}

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
 * `{{json .}}`, `{{json .Field}}`, `{{upper .X}}`, `{{lower .X}}`, `\t` and the `table` prefix.
 */
export function render(template: string, obj: Record<string, unknown>): string {
  const get = (p: string): unknown => (p === '.' ? obj : p.replace(/^\./, '').split('.').reduce<unknown>((o, k) => (o && typeof o === 'object' ? (o as Record<string, unknown>)[k] : undefined), obj));
  const str = (v: unknown): string => goValue(v);
  return template
    .replace(/\\t/g, '\t')
    .replace(/\\n/g, '\n')
    .replace(/\{\{\s*(json|upper|lower)?\s*(\.[A-Za-z0-9_.]*|\.)\s*\}\}/g, (_m, fn: string | undefined, p: string) => {
      const v = get(p);
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
