import { execFileSync } from 'node:child_process';

/**
 * Mocha global setup (.mocharc.json `require`): builds dist/ once before the suite. The tests start
 * Relaycast as users do, through bin/relaycast.js, which runs the compiled JavaScript; an
 * incremental build of unchanged sources takes about 3 s.
 */
export function mochaGlobalSetup(): void {
  execFileSync('npm', ['run', '--silent', 'build'], { stdio: 'inherit' });
}
