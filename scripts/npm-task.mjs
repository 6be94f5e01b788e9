#!/usr/bin/env node
/**
 * The npm scripts that run several tools in a row (build, check, typecheck). npm appends
 * `npm run X -- args` to a script's last command only, so `npm run build -- --help` used to reach
 * `touch`; here each task answers --help with its own usage, refuses arguments it does not take,
 * and stops at the first step that fails, with that step's exit code.
 *
 *   node scripts/npm-task.mjs <task> [--help]
 */
import { spawnSync } from 'node:child_process';
import { closeSync, openSync, utimesSync } from 'node:fs';

/** Each task: its usage, and its steps (argv arrays; npm puts node_modules/.bin on PATH). */
const TASKS = {
  build: {
    usage: `npm run build

  Compiles the TypeScript of app, core, db, media, origin, edge and balancer into dist/ (tsc -p
  tsconfig.build.json, incremental), which bin/relaycast.js runs. npm start, scripts/setup.sh and
  the container image run it; tests that start relaycast processes need it first. No options.`,
    steps: [['tsc', '-p', 'tsconfig.build.json']],
    // tsc leaves dist/.tsbuildinfo alone when nothing changed: its time is when dist/ was last checked.
    after: () => {
      closeSync(openSync('dist/.tsbuildinfo', 'a'));
      const now = new Date();
      utimesSync('dist/.tsbuildinfo', now, now);
    },
  },
  typecheck: {
    usage: `npm run typecheck

  The type checker over the whole repository (tsc --noEmit: sources, tests, benchmarks, kit) and
  over the web player (tsc -p tsconfig.player.json, browser types). No options.`,
    steps: [
      ['tsc', '--noEmit'],
      ['tsc', '-p', 'tsconfig.player.json'],
    ],
  },
  check: {
    usage: `npm run check

  What CI checks before the tests (.ci/run): the type checker (npm run typecheck), the linter
  (npm run lint: eslint) and the import rules (npm run lint:imports: dependency-cruiser,
  .dependency-cruiser.cjs). Each of those also runs alone. No options.`,
    steps: [
      ['npm', 'run', '--silent', 'typecheck'],
      ['npm', 'run', '--silent', 'lint'],
      ['npm', 'run', '--silent', 'lint:imports'],
    ],
  },
};

const [name, ...args] = process.argv.slice(2);
const task = TASKS[name];
if (!task) {
  console.error(`npm-task: no task ${name ?? '(none)'}; tasks: ${Object.keys(TASKS).join(', ')}`);
  process.exit(2);
}
if (args.includes('--help') || args.includes('-h')) {
  console.log(task.usage);
  process.exit(0);
}
if (args.length > 0) {
  console.error(`npm run ${name} takes no arguments, got: ${args.join(' ')}\n\n${task.usage}`);
  process.exit(2);
}
for (const [command, ...rest] of task.steps) {
  const { status, error } = spawnSync(command, rest, { stdio: 'inherit' });
  if (error) {
    console.error(`npm run ${name}: ${command} could not run: ${error.message}`);
    process.exit(1);
  }
  if (status !== 0) process.exit(status ?? 1);
}
task.after?.();
