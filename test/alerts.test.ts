import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { Metrics } from '../core/metrics.ts';

/**
 * The Prometheus alerting rules (docker/helm/relaycast/files/relaycast-alerts.yml), checked by the
 * real promtool (Debian's prometheus package, scripts/setup.sh --test): the file is valid, each
 * alert fires on synthetic series when it should and stays quiet when it should not
 * (test/fixtures/alerts/relaycast-alerts.test.yml), and every metric it names is one Relaycast
 * exports, so renaming a metric breaks this test rather than an operator's alerting.
 */

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const ALERT_RULES = join(ROOT, 'docker/helm/relaycast/files/relaycast-alerts.yml');
const UNIT_TESTS = join(ROOT, 'test/fixtures/alerts/relaycast-alerts.test.yml');

interface Rule { alert: string; expr: string; for?: string; labels?: Record<string, string>; annotations?: Record<string, string> }
interface UnitTests { rule_files: string[]; tests: { name: string; alert_rule_test: { alertname: string; eval_time: string; exp_alerts?: unknown[] }[] }[] }

const rulesOf = (text: string): Rule[] => (parseYaml(text) as { groups: { rules: Rule[] }[] }).groups.flatMap((g) => g.rules);

function promtool(args: string[]): { status: number | null; output: string } {
  const run = spawnSync('promtool', args, { encoding: 'utf8', timeout: 60_000 });
  if (run.error) throw new Error(`promtool: ${run.error.message} (scripts/setup.sh --test installs it)`);
  return { status: run.status, output: `${run.stdout}${run.stderr}` };
}

const KEYWORDS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'and', 'or', 'unless', 'bool', 'offset']);

/** The metric names a PromQL expression selects: identifiers outside strings, label matchers, ranges and groupings that call nothing. */
function metricNames(expr: string): string[] {
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ');
  return [...bare.matchAll(/\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()/g)].map((m) => m[1]!).filter((name) => !KEYWORDS.has(name));
}

/** Every series name a node's /metrics can hold (a histogram's _bucket, _sum and _count), plus Prometheus's own `up`. */
function exported(): Set<string> {
  const names = new Set(['up']);
  for (const metric of new Metrics().registry.getMetricsAsArray() as unknown as { name: string; type: string }[]) {
    names.add(metric.name);
    if (metric.type === 'histogram') for (const suffix of ['_bucket', '_sum', '_count']) names.add(metric.name + suffix);
    if (metric.type === 'summary') for (const suffix of ['_sum', '_count']) names.add(metric.name + suffix);
  }
  return names;
}

const unknownMetrics = (rules: Rule[], known: Set<string>) => rules.flatMap((r) => metricNames(r.expr).filter((name) => !known.has(name)).map((name) => `${r.alert}: ${name}`));

describe('alerting rules (docker/helm/relaycast/files/relaycast-alerts.yml, promtool)', () => {
  const text = readFileSync(ALERT_RULES, 'utf8');
  const rules = rulesOf(text);

  it('pass promtool check rules', () => {
    const { status, output } = promtool(['check', 'rules', ALERT_RULES]);
    assert.equal(status, 0, output);
    assert.match(output, new RegExp(`SUCCESS: ${rules.length} rules found`));
  });

  it('fire and stay quiet as promtool test rules expects, with a case of each for every alert', () => {
    const { status, output } = promtool(['test', 'rules', UNIT_TESTS]);
    assert.equal(status, 0, output);
    const cases = (parseYaml(readFileSync(UNIT_TESTS, 'utf8')) as UnitTests).tests.flatMap((t) => t.alert_rule_test);
    for (const { alert } of rules) {
      assert.ok(cases.some((c) => c.alertname === alert && (c.exp_alerts ?? []).length > 0), `${alert}: a case where it fires`);
      assert.ok(cases.some((c) => c.alertname === alert && (c.exp_alerts ?? []).length === 0), `${alert}: a case where it stays quiet`);
    }
  });

  it('give every alert a for, a severity, a summary, what to do, and a comment on its threshold', () => {
    assert.ok(rules.length >= 15, `${rules.length} alerts`);
    assert.equal(new Set(rules.map((r) => r.alert)).size, rules.length, 'alert names are unique');
    const lines = text.split('\n');
    for (const rule of rules) {
      assert.match(rule.alert, /^Relaycast[A-Z][A-Za-z]+$/);
      assert.match(rule.for ?? '', /^\d+[smh]$/, `${rule.alert}: for`);
      assert.ok(['warning', 'critical'].includes(rule.labels?.severity ?? ''), `${rule.alert}: severity`);
      assert.ok((rule.annotations?.summary ?? '').length > 10, `${rule.alert}: summary`);
      assert.ok((rule.annotations?.description ?? '').length > 40, `${rule.alert}: description`);
      const at = lines.findIndex((l) => l.trim() === `- alert: ${rule.alert}`);
      assert.match(lines[at - 1] ?? '', /^\s*# /, `${rule.alert}: a comment above it explains its threshold`);
    }
  });

  it('name only metrics that Relaycast exports (core/metrics.ts) or Prometheus gives (up)', () => {
    const known = exported();
    assert.deepEqual(unknownMetrics(rules, known), []);
    const used = new Set(rules.flatMap((r) => metricNames(r.expr)));
    for (const name of ['up', 'relaycast_database_up', 'relaycast_tls_certificate_expiry_timestamp_seconds', 'process_start_time_seconds', 'relaycast_admission_seconds_count']) assert.ok(used.has(name), `${name} is found in the rules`);
    // The check can fail: a renamed metric, and a metric the rules misspell, are reported.
    const renamed = new Set([...known].filter((name) => name !== 'relaycast_haproxy_restarts_total'));
    assert.deepEqual(unknownMetrics(rules, renamed), ['RelaycastHaproxyRestarts: relaycast_haproxy_restarts_total']);
    assert.deepEqual(unknownMetrics(rulesOf(text.replace('relaycast_media_worker_restarts_total', 'relaycast_media_worker_restart_total')), known), ['RelaycastMediaWorkerRestarts: relaycast_media_worker_restart_total']);
  });

  it('watch labelled counters that a node exports at 0 from its start (so increase() sees the first event)', async () => {
    const metrics = new Metrics();
    for (const rule of rules) {
      for (const [, name, matchers] of rule.expr.matchAll(/increase\((\w+)\{([^}]*)\}\[/g)) {
        const wanted = Object.fromEntries([...matchers!.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1]!, m[2]!]));
        const values = (await metrics.registry.getSingleMetric(name!)!.get()).values;
        assert.ok(values.some((v) => v.value === 0 && Object.entries(wanted).every(([k, value]) => v.labels[k] === value)), `${rule.alert}: ${name}${JSON.stringify(wanted)} is exported at 0`);
      }
    }
  });

  it('are tested by cases that can fail: a changed threshold fails promtool test rules', () => {
    const dir = mkdtempSync(join(tmpdir(), 'relaycast-alerts-'));
    try {
      mkdirSync(join(dir, 'rules'));
      writeFileSync(join(dir, 'rules/alerts.yml'), text.replace('< 14 * 86400', '< 7 * 86400'));
      const tests = parseYaml(readFileSync(UNIT_TESTS, 'utf8')) as UnitTests;
      tests.rule_files = ['rules/alerts.yml'];
      writeFileSync(join(dir, 'tests.yml'), JSON.stringify(tests));
      const { status, output } = promtool(['test', 'rules', join(dir, 'tests.yml')]);
      assert.notEqual(status, 0, output);
      assert.match(output, /RelaycastCertificateExpiresSoon/);
      copyFileSync(ALERT_RULES, join(dir, 'rules/alerts.yml'));
      assert.equal(promtool(['test', 'rules', join(dir, 'tests.yml')]).status, 0, 'the same cases pass on the file itself');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('are listed in docs/operating/monitoring.md, each in the Alerts table', () => {
    const doc = readFileSync(join(ROOT, 'docs/operating/monitoring.md'), 'utf8');
    for (const { alert } of rules) assert.match(doc, new RegExp(`^\\| \`${alert}\` \\|`, 'm'), `${alert} in the Alerts table`);
  });
});
