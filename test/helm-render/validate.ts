import { fileURLToPath } from 'node:url';
import ts from 'typescript';

/**
 * Checks rendered Kubernetes objects offline, three ways:
 * - the OpenAPI schemas of Kubernetes (and of the KEDA and prometheus-operator CRDs), compiled to
 *   validators by the kubernetes-models packages: required fields, types, enums, formats;
 * - unknown fields, which those schemas let through (as the API server's strict field validation
 *   and kubeconform -strict do not): each object is type-checked by TypeScript, as an object
 *   literal, against the same packages' interfaces, so a misspelt field at any depth is an error;
 * - the name and label rules the API server applies beyond the schemas.
 */

export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [key: string]: unknown;
}

/** apiVersion/kind → the module with its model (class `Kind`, interface `IKind`). */
const MODELS: Record<string, string> = {
  'v1/Secret': 'kubernetes-models/v1/Secret',
  'v1/Service': 'kubernetes-models/v1/Service',
  'v1/ServiceAccount': 'kubernetes-models/v1/ServiceAccount',
  'v1/ConfigMap': 'kubernetes-models/v1/ConfigMap',
  'v1/PersistentVolumeClaim': 'kubernetes-models/v1/PersistentVolumeClaim',
  'apps/v1/Deployment': 'kubernetes-models/apps/v1/Deployment',
  'apps/v1/StatefulSet': 'kubernetes-models/apps/v1/StatefulSet',
  'apps/v1/DaemonSet': 'kubernetes-models/apps/v1/DaemonSet',
  'policy/v1/PodDisruptionBudget': 'kubernetes-models/policy/v1/PodDisruptionBudget',
  'autoscaling/v2/HorizontalPodAutoscaler': 'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler',
  'keda.sh/v1alpha1/ScaledObject': '@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject',
  'monitoring.coreos.com/v1/ServiceMonitor': '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor',
  'monitoring.coreos.com/v1/PrometheusRule': '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule',
};

export const describeObject = (o: K8sObject) => `${o.kind}/${o.metadata?.name}`;

function modelOf(o: K8sObject): string | undefined {
  return MODELS[`${o.apiVersion}/${o.kind}`];
}

/** Errors against the OpenAPI schemas, one string per object that fails. */
export async function schemaErrors(objects: K8sObject[]): Promise<string[]> {
  const errors: string[] = [];
  for (const o of objects) {
    const model = modelOf(o);
    if (!model) {
      errors.push(`${describeObject(o)}: no schema known for ${o.apiVersion} ${o.kind}`);
      continue;
    }
    const Model = ((await import(model)) as Record<string, new (data: unknown) => { validate(): void }>)[o.kind]!;
    try {
      new Model(o).validate();
    } catch (error) {
      errors.push(`${describeObject(o)}: ${(error as Error).message}`);
    }
  }
  return errors;
}

const parsed = new Map<string, ts.SourceFile | undefined>();

/**
 * The object's shape: its keys, and for values only their types (apiVersion and kind kept), with
 * array elements of the same shape counted once. Objects of one shape type-check alike.
 */
function shape(value: unknown, key?: string): unknown {
  if (Array.isArray(value)) return [...new Set(value.map((v) => JSON.stringify(shape(v))))];
  if (value !== null && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, shape(v, k)]));
  return key === 'apiVersion' || key === 'kind' ? value : typeof value;
}

/**
 * Type errors of the objects as literals of their interfaces: unknown fields, wrong types. One
 * object of each shape is checked (the compiler takes a few seconds for every object rendered).
 */
export function typeErrors(objects: K8sObject[]): string[] {
  const shapes = new Map<string, K8sObject>();
  for (const o of objects.filter((x) => modelOf(x))) {
    const key = JSON.stringify(shape(o));
    if (!shapes.has(key)) shapes.set(key, o);
  }
  const known = [...shapes.values()];
  const imports = [...new Set(known.map((o) => `${modelOf(o)}|${o.kind}`))].map((key) => {
    const [module, kind] = key.split('|');
    return `import type { I${kind} as I_${module!.replace(/\W/g, '_')} } from ${JSON.stringify(module)};`;
  });
  // One object per line, so a diagnostic's line names its object.
  const header = imports.length;
  const lines = known.map((o, i) => `export const o${i}: I_${modelOf(o)!.replace(/\W/g, '_')} = ${JSON.stringify(o)};`);
  const source = [...imports, ...lines].join('\n');
  const file = fileURLToPath(new URL('./__rendered__.ts', import.meta.url));
  const options: ts.CompilerOptions = {
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    types: [],
    // No DOM and no later lib: the interfaces need only the basics, and the check runs twice as fast.
    lib: ['lib.es5.d.ts'],
  };
  const host = ts.createCompilerHost(options);
  const { getSourceFile, fileExists, readFile } = host;
  host.getSourceFile = (name, language, ...rest) => {
    if (name === file) return ts.createSourceFile(name, source, language);
    // Declaration files parsed once for all checks (they do not change during a run).
    if (!parsed.has(name)) parsed.set(name, getSourceFile.call(host, name, language, ...rest));
    return parsed.get(name);
  };
  host.fileExists = (name) => name === file || fileExists.call(host, name);
  host.readFile = (name) => (name === file ? source : readFile.call(host, name));
  const program = ts.createProgram([file], options, host);
  const sourceFile = program.getSourceFile(file)!;
  return [...program.getOptionsDiagnostics(), ...program.getSyntacticDiagnostics(sourceFile), ...program.getSemanticDiagnostics(sourceFile)].map((d) => {
    const message = ts.flattenDiagnosticMessageText(d.messageText, ' ');
    if (d.file?.fileName !== file || d.start === undefined) return message;
    const line = d.file.getLineAndCharacterOfPosition(d.start).line;
    const object = known[line - header];
    return object ? `${describeObject(object)}: ${message}` : message;
  });
}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS_1035 = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
const PORT_NAME = /^(?=.*[a-z])[a-z0-9]([a-z0-9-]*[a-z0-9])?$/;
const ENV_NAME = /^[-._a-zA-Z][-._a-zA-Z0-9]*$/;

function dnsSubdomain(name: string): boolean {
  return name.length <= 253 && name.split('.').every((part) => DNS_LABEL.test(part) && part.length <= 63);
}

function labelKey(key: string): boolean {
  const [prefix, name] = key.includes('/') ? key.split('/', 2) : [undefined, key];
  return (prefix === undefined || dnsSubdomain(prefix)) && name!.length <= 63 && /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/.test(name!);
}

function podSpecOf(o: K8sObject): Record<string, unknown> | undefined {
  const spec = o.spec as { template?: { spec?: Record<string, unknown> } } | undefined;
  return spec?.template?.spec;
}

/** What the API server checks besides the schemas: names, labels, port and variable names. */
export function apiServerRuleErrors(objects: K8sObject[]): string[] {
  const errors: string[] = [];
  const seen = new Set<string>();
  for (const o of objects) {
    const what = describeObject(o);
    const name = o.metadata?.name ?? '';
    if (seen.has(`${o.kind}/${name}`)) errors.push(`${what}: rendered twice`);
    seen.add(`${o.kind}/${name}`);
    if (o.kind === 'Service' ? !(DNS_1035.test(name) && name.length <= 63) : !dnsSubdomain(name)) errors.push(`${what}: invalid name`);
    if (o.kind === 'StatefulSet' && name.length > 52) errors.push(`${what}: a StatefulSet name must be at most 52 characters`);
    const labelSets = [o.metadata?.labels, (o.spec as { template?: { metadata?: { labels?: Record<string, string> } } } | undefined)?.template?.metadata?.labels];
    for (const labels of labelSets) {
      for (const [key, value] of Object.entries(labels ?? {})) {
        if (!labelKey(key)) errors.push(`${what}: invalid label key ${key}`);
        if (typeof value !== 'string' || value.length > 63 || !LABEL_VALUE.test(value)) errors.push(`${what}: invalid label value ${key}=${value}`);
      }
    }
    for (const [key, value] of Object.entries(o.metadata?.annotations ?? {})) {
      if (!labelKey(key)) errors.push(`${what}: invalid annotation key ${key}`);
      if (typeof value !== 'string') errors.push(`${what}: annotation ${key} is not a string`);
    }
    const pod = podSpecOf(o);
    const containers = (pod?.containers ?? []) as { name: string; ports?: { name?: string }[]; env?: { name: string }[] }[];
    for (const c of containers) {
      if (!DNS_LABEL.test(c.name)) errors.push(`${what}: invalid container name ${c.name}`);
      for (const p of c.ports ?? []) if (p.name !== undefined && !(p.name.length <= 15 && PORT_NAME.test(p.name))) errors.push(`${what}: invalid port name ${p.name}`);
      for (const e of c.env ?? []) if (!ENV_NAME.test(e.name)) errors.push(`${what}: invalid variable name ${e.name}`);
    }
    if (o.kind === 'Service') {
      const ports = ((o.spec as { ports?: { name?: string }[] }).ports ?? []);
      for (const p of ports) if (p.name !== undefined && !(p.name.length <= 63 && DNS_LABEL.test(p.name))) errors.push(`${what}: invalid port name ${p.name}`);
      if (ports.length > 1 && ports.some((p) => !p.name)) errors.push(`${what}: ports of a multi-port Service need names`);
    }
  }
  return errors;
}
