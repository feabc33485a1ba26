#!/usr/bin/env node
'use strict';
// Entry point. The compiled CLI is in dist/ (built by `npm ci` / `npm run build`); no TypeScript
// is compiled at run time. `--version` is answered before loading the CLI: scripts call it often
// and it needs none of it (`burrow version`, with the runtime's version too, goes through the CLI).
const argv = process.argv.slice(2);
if (argv.length === 1 && (argv[0] === '--version' || argv[0] === '-v')) {
  process.stdout.write(`burrow version ${require('../package.json').version}\n`);
} else {
  require('../dist/cli/main.js')
    .main(argv)
    .then((code) => {
      process.exitCode = code;
    });
}
