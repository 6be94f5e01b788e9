/**
 * The layering of Relaycast's sources, checked by `npm run lint:imports` (in .ci/run). docs/developing/layout.md
 * draws it:
 *
 *   app/            the composition root: the CLI and ClusterNode; it alone knows every role
 *   origin/ edge/ balancer/   the roles; none imports another
 *   media/ db/      mediasoup plumbing and WHIP/WHEP; Postgres and its repositories
 *   core/           the kernel: config, errors, HTTP glue, logger, metrics, tokens
 *
 *   test/  bench/   the tests and the benchmarks; neither imports the other (bench/simulator/ aside)
 *   kit/            what both use: processes, Postgres, the browser, the libwebrtc client, stats
 *
 * An arrow only points down. Type-only imports count too, except where a rule says otherwise.
 */
const ROLES = '^(origin|edge|balancer)/';
const PRODUCT = '^(app|core|db|media|origin|edge|balancer)/';

module.exports = {
  forbidden: [
    {
      name: 'kernel-imports-only-itself',
      comment: 'core/ is the shared kernel: every layer uses it, it uses none of them.',
      severity: 'error',
      from: { path: '^core/' },
      to: { path: PRODUCT, pathNot: '^core/' },
    },
    {
      name: 'db-below-roles',
      comment: 'db/ knows Postgres and the kernel, nothing of media or roles.',
      severity: 'error',
      from: { path: '^db/' },
      to: { path: PRODUCT, pathNot: '^(core|db)/' },
    },
    {
      name: 'media-below-roles',
      comment: 'media/ knows mediasoup, SDP and the kernel, nothing of the database or roles.',
      severity: 'error',
      from: { path: '^media/' },
      to: { path: PRODUCT, pathNot: '^(core|media)/' },
    },
    {
      name: 'roles-apart',
      comment: 'A role does not import another role; what two share belongs in core/, db/ or media/.',
      severity: 'error',
      from: { path: '^(origin|edge|balancer)/' },
      to: { path: ROLES, pathNot: '^$1/' },
    },
    {
      name: 'nothing-imports-the-root',
      comment: 'app/ composes the roles; a role or layer that imported it would import every role.',
      severity: 'error',
      from: { path: PRODUCT, pathNot: '^app/' },
      to: { path: '^app/' },
    },
    {
      name: 'root-loads-roles-on-demand',
      comment:
        'app/ loads a role (and mediasoup with it) only when the process runs that role: with import(), ' +
        'or for types only. A balancer process must not load mediasoup.',
      severity: 'error',
      from: { path: '^app/' },
      to: { path: '^(origin|edge|balancer|media)/', dependencyTypesNot: ['dynamic-import', 'type-only', 'type-import'] },
    },
    {
      name: 'balancer-carries-no-media',
      comment: 'The balancer only places streams and viewers; mediasoup and node-media-server are not its business.',
      severity: 'error',
      from: { path: '^balancer/' },
      to: { path: '^(media/|node_modules/(mediasoup|node-media-server)/)', dependencyTypesNot: ['type-only', 'type-import'] },
    },
    {
      name: 'mediasoup-in-media-roles',
      comment: 'mediasoup at run time belongs to media/ and the roles that carry media.',
      severity: 'error',
      from: { path: '^(core|db|balancer|app)/' },
      to: { path: '^node_modules/mediasoup/', dependencyTypesNot: ['type-only', 'type-import'] },
    },
    {
      name: 'product-not-tests',
      comment: 'The product never imports its tests, its benchmarks or the kit they share.',
      severity: 'error',
      from: { path: PRODUCT },
      to: { path: '^(test|bench|kit)/' },
    },
    {
      name: 'bench-not-tests',
      comment: 'The benchmarks do not import the tests; what both use lives in kit/.',
      severity: 'error',
      from: { path: '^bench/' },
      to: { path: '^test/' },
    },
    {
      name: 'tests-not-bench',
      comment:
        'The tests do not import the benchmarks (what both use lives in kit/), except the cluster simulator, ' +
        'which test/simulate.test.ts tests. Running a benchmark script as a process is no import.',
      severity: 'error',
      from: { path: '^test/' },
      to: { path: '^bench/', pathNot: '^bench/simulator/' },
    },
    {
      name: 'kit-below-tests',
      comment: 'kit/ is what the tests and the benchmarks share: it imports neither.',
      severity: 'error',
      from: { path: '^kit/' },
      to: { path: '^(test|bench)/' },
    },
    {
      name: 'no-cycles',
      severity: 'error',
      from: {},
      to: { circular: true, viaOnly: { dependencyTypesNot: ['type-only', 'type-import'] } },
    },
    {
      name: 'not-to-unresolvable',
      severity: 'error',
      from: {},
      to: { couldNotResolve: true },
    },
    {
      name: 'no-dev-dependencies-in-product',
      comment: 'The container image installs production dependencies only.',
      severity: 'error',
      from: { path: PRODUCT },
      to: { dependencyTypes: ['npm-dev'], dependencyTypesNot: ['type-only', 'type-import'] },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { exportsFields: ['exports'], conditionNames: ['import', 'require', 'node', 'default', 'types'] },
    exclude: { path: '^(node_modules|dist)/' },
  },
};
