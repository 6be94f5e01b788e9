#!/usr/bin/env node
// The `relaycast` command: runs the compiled JavaScript in dist/ (no loader in production).
// `npm run build` makes dist/; scripts/setup.sh, `npm start` and `npm test` run it first, and the
// container image ships dist/ alone. Run from a clone whose dist/ is missing or older than the
// sources, it says so instead of running stale code.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const entry = join(root, 'dist', 'app', 'cli.js');
/** The folders tsconfig.build.json compiles; only a clone has them (the image has dist/ alone). */
const SOURCES = ['app', 'core', 'db', 'media', 'origin', 'edge', 'balancer'];

function newestSource() {
  let newest = 0;
  for (const folder of SOURCES) {
    const dir = join(root, folder);
    if (!existsSync(dir)) continue;
    for (const file of readdirSync(dir, { recursive: true })) {
      if (String(file).endsWith('.ts')) newest = Math.max(newest, statSync(join(dir, String(file))).mtimeMs);
    }
  }
  return newest;
}

const stamp = join(root, 'dist', '.tsbuildinfo');
if (!existsSync(entry) || (existsSync(stamp) && statSync(stamp).mtimeMs < newestSource())) {
  process.stderr.write(`relaycast: ${existsSync(entry) ? 'dist/ is older than the sources' : 'no build in dist/'}; run \`npm run build\` in ${root}\n`);
  process.exit(1);
}
const { main } = await import(pathToFileURL(entry).href);
await main(process.argv);
