// Maps a key path inside a parsed YAML document to its file:line:col, so every config error can
// point at the offending key or value (the position map fastify's validation lacks).

import { type Document, isMap, isScalar, isSeq, type LineCounter, type Node, type Pair } from 'yaml';

/** One step of a key path: a map key or an array index. */
export type KeyPathStep = string | number;

/**
 * Formats a key path for humans: `['segments','web','vips',0,'listen']` -> `segments.web.vips[0].listen`.
 * Keys that are not plain identifiers are quoted: `ipsets["a b"]`.
 */
export function formatKeyPath(path: readonly KeyPathStep[]): string {
  let out = '';
  for (const step of path) {
    if (typeof step === 'number') out += `[${step}]`;
    else if (/^[A-Za-z_][A-Za-z0-9_.-]*$/.test(step)) out += out ? `.${step}` : step;
    else out += `[${JSON.stringify(step)}]`;
  }
  return out;
}

/**
 * Finds where a key path is in the document.
 * @param doc - the parsed document
 * @param lines - the LineCounter that was passed to parseDocument
 * @param path - key path; `target: 'key'` points at the key of the last step (for "unknown key"
 *   errors), `'value'` at its value. Steps that do not exist fall back to the deepest node found.
 * @returns 1-based line and column (1:1 for an empty document)
 */
export function positionOf(
  doc: Document,
  lines: LineCounter,
  path: readonly KeyPathStep[],
  target: 'key' | 'value' = 'value',
): { line: number; col: number } {
  let node: unknown = doc.contents;
  let offset = rangeStart(node) ?? 0;
  for (let i = 0; i < path.length; i++) {
    const step = path[i] as KeyPathStep;
    let next: unknown;
    let keyOffset: number | undefined;
    if (isMap(node)) {
      const pair = (node.items as Pair[]).find((p) => keyText(p.key) === String(step));
      if (pair) {
        keyOffset = rangeStart(pair.key);
        next = pair.value;
      }
    } else if (isSeq(node) && typeof step === 'number') {
      next = node.items[step];
    }
    if (next === undefined && keyOffset === undefined) break;
    const isLast = i === path.length - 1;
    if (isLast && target === 'key' && keyOffset !== undefined) {
      offset = keyOffset;
      break;
    }
    offset = rangeStart(next) ?? keyOffset ?? offset;
    node = next;
  }
  const pos = lines.linePos(offset);
  return { line: pos.line, col: pos.col };
}

function keyText(key: unknown): string | undefined {
  if (isScalar(key)) return String(key.value);
  return undefined;
}

function rangeStart(node: unknown): number | undefined {
  const range = (node as Node | null | undefined)?.range;
  return range ? range[0] : undefined;
}
