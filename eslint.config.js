// ESLint (flat config) with typescript-eslint, run by `npm run lint` in .ci/run. The import
// layering is dependency-cruiser's (.dependency-cruiser.cjs); the type checker is tsc's.
import js from '@eslint/js';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['node_modules/', 'dist/', 'data/', 'test/artifacts/', 'bench/results/', '.tmp/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      // Promises nobody awaits or catches are how a rejected one takes a server down.
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': ['error', { checksVoidReturn: { arguments: false, attributes: false } }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
      '@typescript-eslint/consistent-type-imports': ['error', { fixStyle: 'inline-type-imports' }],
      eqeqeq: ['error', 'always', { null: 'ignore' }],
    },
  },
  {
    languageOptions: { globals: globals.node },
  },
  {
    // Plain JavaScript: the CLI entry, the image's hooks, config files; no type information.
    files: ['**/*.js', '**/*.mjs', '**/*.cjs'],
    extends: [tseslint.configs.disableTypeChecked],
  },
  {
    files: ['**/*.cjs'],
    languageOptions: { sourceType: 'commonjs' },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
  {
    // The web player and dashboard run in browsers, as they are (no build step).
    files: ['player/**/*.js'],
    languageOptions: { globals: globals.browser },
  },
  {
    // libwebrtc (@roamhq/wrtc) has no types, and page.evaluate() code handles the page's own
    // objects: the test and benchmark clients use `any` where they touch either.
    files: ['test/**', 'bench/**', 'kit/**'],
    rules: { '@typescript-eslint/no-explicit-any': 'off' },
  },
);
