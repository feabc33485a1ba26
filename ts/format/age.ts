/**
 * Docker's words for durations and times, as `ps` (STATUS "Up 5 minutes", CREATED "27 minutes
 * ago") and `images` print them. Shared by the engine (ts/engine/list.ts) and the CLI's output
 * (ts/cli/format/table.ts re-exports it): the engine imports nothing from ts/cli.
 */

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
