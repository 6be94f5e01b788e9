// Mocha's settings. `npm test` runs every test file; `npx mocha test/x.test.ts` runs just the files
// named (mocha adds a config's spec to the ones named on the command line, so it is left out then).
const named = process.argv.slice(2).some((arg) => /\.test\.ts$/.test(arg));

module.exports = {
  'node-option': ['import=tsx'],
  require: ['test/helpers/build.ts'],
  spec: named ? [] : ['test/**/*.test.ts'],
  extension: ['ts'],
  timeout: 180000,
  exit: false,
  reporter: './test/reporter.cjs',
};
