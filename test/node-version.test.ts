// Guards the toolchain: the tests must run on the Node 24 that the `node` npm package installs. An
// install with --ignore-scripts silently leaves npm scripts on the system Node (20 here), where
// type stripping and undici 8 do not work; this fails loudly instead.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

test('runs on Node 24', () => {
  assert.ok(
    process.version.startsWith('v24.'),
    `expected Node v24.x, got ${process.version} (${process.execPath}); was npm install run with --ignore-scripts?`,
  );
});

test('package.json asks for Node 24 both ways (engines and the node package)', () => {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
    engines?: { node?: string };
    dependencies?: Record<string, string>;
    allowScripts?: Record<string, boolean>;
  };
  assert.match(pkg.engines?.node ?? '', /24/);
  assert.match(pkg.dependencies?.['node'] ?? '', /^\^24\./);
  // Without this approval npm skips the node package's install script and the fallback happens.
  assert.equal(pkg.allowScripts?.['node'], true);
});
