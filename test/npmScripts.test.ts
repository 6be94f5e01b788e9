import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/**
 * Every `npm run` entry point, as a user tries it: `npm run X -- --help` prints X's usage and
 * exits 0, having run nothing else (setup installs nothing, build compiles nothing), and an option
 * one of ours does not take ends non-zero with a message, never a stack trace.
 */

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const scripts = Object.keys((JSON.parse(readFileSync(`${ROOT}/package.json`, 'utf8')) as { scripts: Record<string, string> }).scripts);
/** npm's hooks run around their script; a user does not call them. */
const entries = scripts.filter((name) => !/^(pre|post)/.test(name) || !scripts.includes(name.replace(/^(pre|post)/, '')));

/** What each entry's usage starts with: the tool's own for the tools the entry is (mocha, eslint, …), else `npm run <name>`. */
const SYNOPSIS: Record<string, RegExp> = {
  setup: /bash scripts\/setup\.sh --test/,
  start: /^Usage: relaycast /m,
  test: /^mocha \[spec\.\.\]/m,
  lint: /^eslint \[options\]/m,
  'lint:imports': /^Usage: depcruise /m,
};

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function npmRun(name: string, args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    // Bounded: a --help that starts the real work instead would hang here until the timeout.
    execFile('npm', ['run', '--silent', name, '--', ...args], { cwd: ROOT, timeout: 120_000, maxBuffer: 4 * 1024 * 1024 }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : -1) : 0, stdout, stderr });
    });
  });
}

const STACK_FRAME = /^\s+at .+:\d+:\d+\)?$/m;

describe('npm run entry points: --help and unknown options', function () {
  this.timeout(600_000);
  const helps = new Map<string, Run>();

  before(async () => {
    // Two at a time: most start Node with tsx, and the bench entries that need dist/ build it first.
    const queue = [...entries];
    await Promise.all(
      [0, 1].map(async () => {
        for (let name = queue.shift(); name !== undefined; name = queue.shift()) helps.set(name, await npmRun(name, ['--help']));
      }),
    );
  });

  it('lists the entries it checks', () => {
    assert.ok(entries.includes('simulate') && entries.includes('bench') && entries.includes('setup') && !entries.includes('prestart'), entries.join(', '));
  });

  for (const name of entries) {
    it(`npm run ${name} -- --help prints its usage and exits 0`, () => {
      const run = helps.get(name)!;
      const synopsis = SYNOPSIS[name] ?? new RegExp(`npm run ${name.replace(':', '\\:')}\\b`);
      assert.equal(run.code, 0, `exit ${run.code}\n${run.stdout}${run.stderr}`);
      assert.match(run.stdout, synopsis, run.stdout);
      assert.doesNotMatch(run.stdout + run.stderr, STACK_FRAME);
    });
  }

  it('an option an entry of ours does not take ends non-zero with a message, no stack trace', async () => {
    // The benchmarks share their command-line entry (bench/lib/options.ts runCommand): one of them stands for all.
    for (const name of ['setup', 'build', 'check', 'typecheck', 'docs', 'simulate', 'bench:geomap']) {
      const run = await npmRun(name, ['--no-such-option']);
      assert.notEqual(run.code, 0, `${name} took --no-such-option:\n${run.stdout}`);
      assert.match(run.stderr, /no-such-option|unknown|takes no/i, `${name}: ${run.stderr}`);
      assert.doesNotMatch(run.stderr, STACK_FRAME, `${name}: ${run.stderr}`);
    }
  });
});
