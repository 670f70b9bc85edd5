// Seeded random mutations for the fuzz tests: a small PRNG (mulberry32, so a failing case replays
// from its seed), YAML text mutations (bytes, lines, indentation, interesting scalars) and
// structure-aware ones (a random node of the parsed document replaced by a value of another type).

import { parseDocument } from 'yaml';

/** A seeded source of random choices. */
export interface Random {
  /** Uniform in [0, 1). */
  next(): number;
  /** Integer in [0, n). */
  int(n: number): number;
  pick<T>(items: readonly T[]): T;
}

/** mulberry32: tiny, fast, good enough to spread test cases. */
export function makeRandom(seed: number): Random {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    int: (n) => Math.floor(next() * n),
    pick: (items) => items[Math.floor(next() * items.length)] as (typeof items)[number],
  };
}

/** Strings that tend to find bugs in parsers and validators. */
export const INTERESTING_STRINGS: readonly string[] = [
  '',
  ' ',
  'any',
  'null',
  '~',
  'true',
  'no',
  '0',
  '-1',
  '1e309',
  '.inf',
  '.nan',
  '0x10',
  '99999999999999999999',
  '0.0.0.0/0',
  '::/0',
  '10.1.2.3/8',
  '256.1.1.1',
  '::ffff:10.0.0.0/104',
  '127.0.0.1:0',
  '127.0.0.1:70000',
  '[::1]:0',
  '[::]:0',
  'localhost:0',
  '*',
  '/admin/*',
  '*.example.com',
  '../../../../etc/passwd',
  '/dev/zero',
  '/proc/self/environ',
  '%s%s%n',
  // biome-ignore lint/suspicious/noTemplateCurlyInString: a literal placeholder is the test input
  '${HOME}',
  'a'.repeat(300),
  '\u0000',
  '\u202e',
  'é',
  'constructor',
  '__proto__',
  'hasOwnProperty',
  'toString',
];

/** Values of every YAML type, for structure-aware replacement. */
function randomValue(rnd: Random, depth = 0): unknown {
  switch (rnd.int(depth > 2 ? 5 : 8)) {
    case 0:
      return null;
    case 1:
      return rnd.pick([0, -1, 1, 65536, 2 ** 31, 2 ** 53 + 1, 1.5, -0, Number.MAX_SAFE_INTEGER]);
    case 2:
      return rnd.next() < 0.5;
    case 3:
    case 4:
      return rnd.pick(INTERESTING_STRINGS);
    case 5:
      return [];
    case 6:
      return Array.from({ length: 1 + rnd.int(3) }, () => randomValue(rnd, depth + 1));
    default: {
      const o: Record<string, unknown> = {};
      for (let i = 0; i < 1 + rnd.int(3); i++) o[rnd.pick(KEYS)] = randomValue(rnd, depth + 1);
      return o;
    }
  }
}

/** Keys seglb knows (and some it does not), for inserted keys. */
const KEYS: readonly string[] = [
  'log',
  'level',
  'timeouts',
  'limits',
  'per_source',
  'max_connections',
  'exempt',
  'ipsets',
  'cidrs',
  'file',
  'union',
  'segments',
  'vips',
  'listen',
  'protocol',
  'tls',
  'certificates',
  'key_file',
  'key_env',
  'proxy_protocol',
  'trusted',
  'pool',
  'backend_subnets',
  'allow',
  'deny',
  'from',
  'paths',
  'hosts',
  'headers',
  'methods',
  'trusted_proxies',
  'pools',
  'backends',
  'address',
  'weight',
  'admin',
  'tokens_file',
  'cluster',
  'peers',
  'mode',
  'revoke',
  '__proto__',
  'constructor',
  'unknown_key',
];

const BYTES = ':- \n[]{}"\'&*!#|>%@`,?\t\r\u0000\u00a0é0123456789aZ.';

/** One random mutation of YAML text. */
export function mutateYaml(text: string, rnd: Random): string {
  const lines = text.split('\n');
  const li = rnd.int(lines.length);
  const line = lines[li] ?? '';
  switch (rnd.int(12)) {
    case 0: {
      const at = rnd.int(text.length + 1);
      return text.slice(0, at) + text.slice(at + 1 + rnd.int(8));
    }
    case 1: {
      const at = rnd.int(text.length + 1);
      let ins = '';
      for (let i = 0; i < 1 + rnd.int(4); i++) ins += BYTES[rnd.int(BYTES.length)];
      return text.slice(0, at) + ins + text.slice(at);
    }
    case 2:
      lines.splice(li, 0, line);
      return lines.join('\n');
    case 3:
      lines.splice(li, 1);
      return lines.join('\n');
    case 4: {
      const lj = rnd.int(lines.length);
      lines[li] = lines[lj] ?? '';
      lines[lj] = line;
      return lines.join('\n');
    }
    case 5:
      lines[li] = rnd.next() < 0.5 ? `  ${line}` : line.replace(/^ {1,2}/, '');
      return lines.join('\n');
    case 6: {
      // Replace a scalar after a colon or dash with an interesting value.
      const m = /^(\s*(?:-\s+)?[^:#]*:\s+|\s*-\s+)(.+)$/.exec(line);
      if (!m) return mutateYaml(text, rnd);
      const v = rnd.pick(INTERESTING_STRINGS);
      lines[li] = `${m[1]}${rnd.next() < 0.5 ? JSON.stringify(v) : v}`;
      return lines.join('\n');
    }
    case 7: {
      // Replace a number.
      const m = /\d+/.exec(line);
      if (!m) return mutateYaml(text, rnd);
      lines[li] = line.replace(/\d+/, String(rnd.pick([0, 1, 65535, 65536, -1, 2 ** 31, 1e21, 4294967295])));
      return lines.join('\n');
    }
    case 8: {
      // Insert a known key with a random value at this line's indentation.
      const indent = /^\s*/.exec(line)?.[0] ?? '';
      lines.splice(li, 0, `${indent}${rnd.pick(KEYS)}: ${JSON.stringify(randomValue(rnd))}`);
      return lines.join('\n');
    }
    case 9:
      return text.slice(0, rnd.int(text.length));
    case 10: {
      // Anchors and aliases (merge keys, alias chains).
      const indent = /^\s*/.exec(line)?.[0] ?? '';
      lines.splice(
        li,
        0,
        `${indent}x${li}: &a${li} { listen: "127.0.0.1:0" }`,
        `${indent}y${li}: *a${rnd.int(li + 2)}`,
      );
      return lines.join('\n');
    }
    default:
      return structural(text, rnd);
  }
}

/** Parses the text and replaces (or deletes) one random node of the document, then re-serialises. */
function structural(text: string, rnd: Random): string {
  const doc = parseDocument(text, { uniqueKeys: false });
  if (doc.errors.length > 0 || doc.contents === null) return text;
  const paths: (string | number)[][] = [];
  const walk = (node: unknown, path: (string | number)[]) => {
    paths.push(path);
    if (paths.length > 2000) return;
    if (Array.isArray(node)) {
      node.forEach((v, i) => {
        walk(v, [...path, i]);
      });
    } else if (node && typeof node === 'object')
      for (const [k, v] of Object.entries(node as Record<string, unknown>)) walk(v, [...path, k]);
  };
  let js: unknown;
  try {
    js = doc.toJS({ maxAliasCount: 100 });
  } catch {
    return text;
  }
  walk(js, []);
  const path = rnd.pick(paths.filter((p) => p.length > 0));
  if (!path) return text;
  try {
    if (rnd.next() < 0.2) doc.deleteIn(path);
    else doc.setIn(path, doc.createNode(randomValue(rnd)));
    return doc.toString();
  } catch {
    return text; // a path through an alias or merge key: leave the text as it was
  }
}
