// A minimal terminal emulator for tests: renders what a program wrote to a terminal (raw bytes
// as read from a pty's master, test/harness/ptydrive.py) into the lines a person would see at
// the end. It knows what burrow's progress display and ordinary output use — printable text with
// auto-wrap at the right margin (xterm's deferred wrap), CR, LF, BS, tab, and the CSI sequences
// cursor up/down/forward/back (A B C D), column (G), erase in line (K) and erase in display (J 0) —
// ignores colours (m) and mode switches (h l), and throws on any other escape, so that a display
// that starts using one is noticed rather than rendered wrongly. The screen has no height limit
// (a scrollback that never scrolls away): the cursor only moves up within what was written.

/**
 * Renders `out` on a terminal `cols` wide; returns the screen's lines, without trailing blanks
 * and without the empty lines after the last written one.
 * @param {string} out
 * @param {number} [cols]
 * @returns {string[]}
 */
export function render(out, cols = 80) {
  /** @type {string[][]} */
  const screen = [[]];
  let row = 0;
  let col = 0;
  const line = (r) => {
    while (screen.length <= r) screen.push([]);
    return screen[r];
  };
  const put = (ch) => {
    if (col >= cols) {
      // Deferred wrap: the cursor stays on the last column until the next character comes.
      row++;
      col = 0;
    }
    const l = line(row);
    while (l.length < col) l.push(' ');
    l[col] = ch;
    col++;
  };
  for (let i = 0; i < out.length; i++) {
    const ch = out[i];
    if (ch === '\x1b') {
      if (out[i + 1] !== '[') throw new Error(`vt: unsupported escape ESC ${JSON.stringify(out[i + 1])} at ${i}`);
      const m = /^\[([?]?)([0-9;]*)([@-~])/.exec(out.slice(i + 1));
      if (!m) throw new Error(`vt: unterminated CSI at ${i}: ${JSON.stringify(out.slice(i, i + 12))}`);
      i += m[0].length;
      const [, priv, params, final] = m;
      const n = params === '' ? undefined : Number(params.split(';')[0]);
      const count = Math.max(1, n ?? 1);
      if (priv) {
        if (final !== 'h' && final !== 'l') throw new Error(`vt: unsupported private sequence CSI ?${params}${final}`);
        continue;
      }
      switch (final) {
        case 'A':
          row = Math.max(0, row - count);
          col = Math.min(col, cols - 1);
          break;
        case 'B':
          row += count;
          col = Math.min(col, cols - 1);
          break;
        case 'C':
          col = Math.min(cols - 1, col + count);
          break;
        case 'D':
          col = Math.max(0, Math.min(col, cols - 1) - count);
          break;
        case 'G':
          col = Math.min(cols - 1, count - 1);
          break;
        case 'K': {
          const l = line(row);
          const c = Math.min(col, cols - 1);
          if ((n ?? 0) === 0) l.length = Math.min(l.length, c);
          else if (n === 1) for (let k = 0; k <= c && k < l.length; k++) l[k] = ' ';
          else if (n === 2) l.length = 0;
          else throw new Error(`vt: unsupported CSI ${params}K`);
          break;
        }
        case 'J': {
          if ((n ?? 0) !== 0) throw new Error(`vt: unsupported CSI ${params}J`);
          const l = line(row);
          l.length = Math.min(l.length, Math.min(col, cols - 1));
          screen.length = row + 1;
          break;
        }
        case 'm':
          break;
        default:
          throw new Error(`vt: unsupported sequence CSI ${params}${final}`);
      }
      continue;
    }
    if (ch === '\r') col = 0;
    else if (ch === '\n') {
      row++;
      line(row);
    } else if (ch === '\b') col = Math.max(0, Math.min(col, cols - 1) - 1);
    else if (ch === '\t') col = Math.min(cols - 1, (Math.floor(col / 8) + 1) * 8);
    else if (ch === '\x07') continue;
    else if (ch < ' ') throw new Error(`vt: unsupported control character ${JSON.stringify(ch)} at ${i}`);
    else put(ch);
  }
  const lines = screen.map((l) => l.join('').replace(/\s+$/, ''));
  while (lines.length && lines[lines.length - 1] === '') lines.pop();
  return lines;
}
