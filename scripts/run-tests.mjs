// Runs every compiled test file (packages/*/dist/test/**/*.test.js, test/dist/**/*.test.js)
// with Node's test runner. Extra arguments are passed to `node --test`.
import { spawnSync } from 'node:child_process'
import { existsSync, readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'

function walk(dir, out) {
  if (!existsSync(dir)) return out
  for (const name of readdirSync(dir)) {
    const p = join(dir, name)
    if (statSync(p).isDirectory()) walk(p, out)
    else if (name.endsWith('.test.js')) out.push(p)
  }
  return out
}

const files = []
for (const pkg of readdirSync('packages')) walk(join('packages', pkg, 'dist', 'test'), files)
walk(join('test', 'dist'), files)
if (files.length === 0) {
  console.error('no test files found: run `tsc -b` first')
  process.exit(1)
}
const args = ['--test', ...process.argv.slice(2), ...files.sort()]
const r = spawnSync(process.execPath, args, { stdio: 'inherit' })
process.exit(r.status ?? 1)
