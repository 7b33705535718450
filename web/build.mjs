// Bundles the editor into dist/: `npm ci && node build.mjs` (the Makefile's `web` target), or
// into OUTDIR with `node build.mjs OUTDIR` (setup.py does, to ship the editor inside the wheel).
//
//   src/drafts.js  -> dist/drafts.js   the draft list at GET /
//   src/editor.js  -> dist/editor.js   the editor at GET /d/{draft_id}
//   public/*       -> dist/*           the two HTML pages, the stylesheet and the service worker
//                                      (sw.js, served at /sw.js), copied as they are
//
// One yjs instance per bundle (npm dedupes it; esbuild bundles each entry on its own).
import { build } from 'esbuild'
import { cp, mkdir, rm } from 'node:fs/promises'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
const dist = process.argv[2] ? resolve(process.argv[2]) : join(here, 'dist')

await rm(dist, { recursive: true, force: true })
await mkdir(dist, { recursive: true })
await build({
  entryPoints: [join(here, 'src/drafts.js'), join(here, 'src/editor.js')],
  outdir: dist,
  bundle: true,
  format: 'esm',
  target: ['es2022'],
  minify: true,
  sourcemap: 'linked',
  legalComments: 'linked',
  logLevel: 'warning'
})
await cp(join(here, 'public'), dist, { recursive: true })
console.log(`built ${dist}`)
