// Install step of the optional addon: `node-gyp rebuild`, pointed at the running Node's own
// headers when they are installed next to it (distribution packages ship them in
// <prefix>/include/node), so that no header download is needed on an offline machine.
// It runs as the root package's own `install` script (npm 11 blocks dependencies' install
// scripts unless the user approves them; a project's own scripts always run). With --optional a
// failed build still exits 0, so the install succeeds and the engine falls back to pure wasm
// (initBackend reports why); without it a failure exits non-zero (to debug the build).
'use strict';
const { spawnSync } = require('node:child_process');
const { existsSync } = require('node:fs');
const path = require('node:path');

function findNodeGyp() {
  if (process.env.npm_config_node_gyp && existsSync(process.env.npm_config_node_gyp)) return process.env.npm_config_node_gyp;
  const candidates = [
    path.join(path.dirname(process.execPath), '../lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js'),
    path.join(path.dirname(process.execPath), 'node_modules/npm/node_modules/node-gyp/bin/node-gyp.js'),
  ];
  for (const c of candidates) if (existsSync(c)) return c;
  try {
    return require.resolve('node-gyp/bin/node-gyp.js');
  } catch {
    return undefined;
  }
}

const optional = process.argv.includes('--optional');
const nodeGyp = findNodeGyp();
if (!nodeGyp) {
  console.error('factorized-transformer-native: node-gyp not found; skipping the native BLAS kernels');
  process.exit(optional ? 0 : 1);
}
const args = [nodeGyp, 'rebuild'];
const prefix = path.resolve(path.dirname(process.execPath), '..');
if (existsSync(path.join(prefix, 'include/node/node_api.h')) && existsSync(path.join(prefix, 'include/node/common.gypi'))) {
  args.push(`--nodedir=${prefix}`);
}
// Build output goes to stderr only on failure: a user's `npm install` stays quiet.
const result = spawnSync(process.execPath, args, { cwd: __dirname, stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
if (result.status !== 0 && result.stderr) process.stderr.write(result.stderr.split('\n').slice(-20).join('\n'));
if (result.status !== 0) {
  console.error('factorized-transformer-native: build failed (needs a C compiler and OpenBLAS: apt-get install build-essential libopenblas-dev); the wasm engine will be used without it');
}
process.exit(optional ? 0 : (result.status ?? 1));
