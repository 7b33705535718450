// Test-only: bundles the minimal Tiptap page of tests/web/test_tiptap.py into dist/ (the
// Makefile's test target runs `npm ci && node build.mjs` here). Never part of web/dist/.
//
//   src/page.js    -> dist/page.js     Tiptap + Collaboration + CollaborationCaret over a
//                                      stock HocuspocusProvider (one classic script: IIFE)
//   src/index.html -> dist/index.html
import { build } from 'esbuild'
import { copyFile, mkdir, rm } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
const dist = join(here, 'dist')

await rm(dist, { recursive: true, force: true })
await mkdir(dist, { recursive: true })
await build({
  entryPoints: [join(here, 'src/page.js')],
  outfile: join(dist, 'page.js'),
  bundle: true,
  format: 'iife',
  target: ['es2022'],
  logLevel: 'warning'
})
await copyFile(join(here, 'src/index.html'), join(dist, 'index.html'))
console.log(`built ${dist}`)
