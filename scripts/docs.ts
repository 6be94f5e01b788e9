import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { CONFIG_DEFAULTS, FIELDS } from '../core/config.ts';
import { PACKAGE_ROOT } from '../core/paths.ts';
import { CONFIG_REFERENCE_PATH, renderConfigReference } from './configReference.ts';

/** `npm run docs`: writes the generated documents (the configuration reference). */

const USAGE = `npm run docs

  Writes ${CONFIG_REFERENCE_PATH} from the config schema in core/config.ts (its fields,
  descriptions and defaults). test/docs.test.ts fails until the file is written again after the
  schema changes. No options.
`;

let help: boolean | undefined;
try {
  ({ values: { help } } = parseArgs({ args: process.argv.slice(2), options: { help: { type: 'boolean', short: 'h' } } }));
} catch (error) {
  process.stderr.write(`${(error as Error).message}\n\n${USAGE}`);
  process.exit(2);
}
if (help) {
  process.stdout.write(USAGE);
  process.exit(0);
}
writeFileSync(join(PACKAGE_ROOT, CONFIG_REFERENCE_PATH), renderConfigReference(FIELDS, CONFIG_DEFAULTS));
process.stdout.write(`wrote ${CONFIG_REFERENCE_PATH}\n`);
