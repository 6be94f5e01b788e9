import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CONFIG_DEFAULTS, FIELDS } from '../core/config.ts';
import { CONFIG_REFERENCE_PATH, renderConfigReference } from '../scripts/configReference.ts';

/**
 * The documents stay true to the code and to each other: the configuration reference is what the
 * config schema renders now, and every relative link in every tracked markdown file reaches a file
 * that exists and, with a #fragment, a heading in it. External (http, https, mailto) links are not
 * fetched.
 */

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** Lines outside fenced code blocks (``` or ~~~), with their 1-based numbers. */
function proseLines(text: string): { line: string; number: number }[] {
  const out: { line: string; number: number }[] = [];
  let fence: string | undefined;
  text.split('\n').forEach((line, i) => {
    const marker = /^\s{0,3}(`{3,}|~{3,})/.exec(line)?.[1];
    if (marker && (fence === undefined || (marker[0] === fence[0] && marker.length >= fence.length))) {
      fence = fence === undefined ? marker : undefined;
      return;
    }
    if (fence === undefined) out.push({ line, number: i + 1 });
  });
  return out;
}

/** A line without its inline code spans, which hold no links. */
function withoutCodeSpans(line: string): string {
  return line.replace(/(`+)[\s\S]*?\1/g, '');
}

/**
 * GitHub's anchor for a heading's text: markdown links reduced to their text, lower case, every
 * character but letters, digits, spaces, - and _ dropped, spaces to -.
 */
function slug(heading: string): string {
  return heading
    .replace(/!?\[([^\]]*)\]\([^)]*\)/g, '$1')
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\p{M} _-]/gu, '')
    .replace(/ /g, '-');
}

/** The anchors of a markdown file's headings; a repeated one gets -1, -2… as on GitHub. */
function anchors(text: string): Set<string> {
  const seen = new Map<string, number>();
  const out = new Set<string>();
  for (const { line } of proseLines(text)) {
    const heading = /^\s{0,3}#{1,6}\s+(.*?)(\s+#+)?\s*$/.exec(line)?.[1];
    if (heading === undefined) continue;
    const base = slug(heading);
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    out.add(n === 0 ? base : `${base}-${n}`);
  }
  return out;
}

/** Inline links and images, `[text](target)`, outside code: their targets. */
function links(text: string): { target: string; number: number }[] {
  const out: { target: string; number: number }[] = [];
  for (const { line, number } of proseLines(text)) {
    for (const match of withoutCodeSpans(line).matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) out.push({ target: match[1]!, number });
  }
  return out;
}

/** What is wrong with one link from `file` (repository-relative), or undefined when it resolves. */
function brokenLink(file: string, target: string): string | undefined {
  if (/^[a-z][a-z0-9+.-]*:/i.test(target)) return undefined; // http:, https:, mailto:
  const hash = target.indexOf('#');
  const path = decodeURIComponent(hash < 0 ? target : target.slice(0, hash));
  const fragment = hash < 0 ? undefined : decodeURIComponent(target.slice(hash + 1));
  const resolved = path === '' ? join(ROOT, file) : path.startsWith('/') ? join(ROOT, path) : join(ROOT, dirname(file), path);
  if (!existsSync(resolved)) return `${relative(ROOT, resolved)} does not exist`;
  if (fragment === undefined || !resolved.endsWith('.md') || statSync(resolved).isDirectory()) return undefined;
  const known = anchors(readFileSync(resolved, 'utf8'));
  return known.has(fragment) ? undefined : `no heading #${fragment} in ${relative(ROOT, resolved)}`;
}

describe('documents', () => {
  it(`${CONFIG_REFERENCE_PATH} is what the config schema renders now`, () => {
    const written = readFileSync(join(ROOT, CONFIG_REFERENCE_PATH), 'utf8');
    assert.ok(written === renderConfigReference(FIELDS, CONFIG_DEFAULTS), `${CONFIG_REFERENCE_PATH} is out of date: run \`npm run docs\` and commit the file`);
  });

  it('every relative link in every tracked markdown file resolves, #fragments to a heading', () => {
    const files = execFileSync('git', ['ls-files', '*.md'], { cwd: ROOT, encoding: 'utf8' }).split('\n').filter(Boolean);
    assert.ok(files.includes('README.md') && files.includes(CONFIG_REFERENCE_PATH), `git ls-files found: ${files.join(', ')}`);
    const broken: string[] = [];
    for (const file of files) {
      for (const { target, number } of links(readFileSync(join(ROOT, file), 'utf8'))) {
        const why = brokenLink(file, target);
        if (why) broken.push(`${file}:${number}: (${target}): ${why}`);
      }
    }
    assert.deepEqual(broken, [], `broken links:\n${broken.join('\n')}`);
  });

  it("anchors follow GitHub's rules", () => {
    assert.equal(slug('Simulcast and viewers on real networks'), 'simulcast-and-viewers-on-real-networks');
    assert.equal(slug('RTMP (OBS, ffmpeg)'), 'rtmp-obs-ffmpeg');
    assert.equal(slug('The suite: `npm run bench`'), 'the-suite-npm-run-bench');
    assert.equal(slug('Autoscaling (off by default)'), 'autoscaling-off-by-default');
    assert.equal(slug('snake_case and a [link](x.md)'), 'snake_case-and-a-link');
    assert.deepEqual([...anchors('# Recording\n## Recording\n```\n# not a heading\n```\n### Recording\n')], ['recording', 'recording-1', 'recording-2']);
  });
});
