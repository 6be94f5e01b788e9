#!/usr/bin/env node
// Runs the TypeScript sources through tsx: no build step between a clone and a running cluster.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../app/cli.ts');
await main(process.argv);
