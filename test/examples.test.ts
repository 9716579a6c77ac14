// The README's examples are the files in examples/src, quoted whole: each runs as written (built
// by tsc -b, run in a child process with a temp data dir, exit 0, the output it shows), and each
// TypeScript block of the README equals one of those files byte for byte.
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import * as path from 'node:path'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..')
const sources = path.join(root, 'examples', 'src')
const built = path.join(root, 'examples', 'dist', 'src')

/** What each example prints when it works. */
const expected: Record<string, RegExp> = {
  'embedded.ts': /^PUT_OK 2 order 4711 4711\n$/,
  'consuming.ts': /^(arrived orders 0 \d\n)+0 TagA a TagA order\n2 TagB a TagB order\n$/,
  'key-index.ts': /^200 0\n$/,
  'transport.ts': /^0 ok 34\n$/,
  'confirm-offset.ts': /^NO_MESSAGE_IN_QUEUE true order 4711 10000\n$/,
  'replication.ts': /^true 3 order 1\n$/,
  'topics.ts': /^\[\{"topic":"audit","queueIds":\[0\]\},\{"topic":"orders","queueIds":\[0,1,2\]\}\]\n0 -1 0\nSYSTEM_BUSY\n$/,
  'client.ts': /^sent SEND_OK (\d) [012]\n(sent SEND_OK \1 [012]\n){2}got TagA order 0 order-0\ngot TagB order 1 order-1\n$/,
}

/** The ```ts blocks of a Markdown text, without their fences. */
function typeScriptBlocks(markdown: string): string[] {
  const blocks: string[] = []
  const fence = /^```ts\n([\s\S]*?)^```$/gm
  for (let m = fence.exec(markdown); m; m = fence.exec(markdown)) blocks.push(m[1]!)
  return blocks
}

test('every example in examples/src is one the tests know', async () => {
  assert.deepEqual((await readdir(sources)).filter((f) => f.endsWith('.ts')).sort(), Object.keys(expected).sort())
})

for (const [file, output] of Object.entries(expected)) {
  test(`examples/src/${file} runs as written and exits 0`, { timeout: 60_000 }, async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'mqts-example-'))
    try {
      const script = path.join(built, file.replace(/\.ts$/, '.js'))
      const r = spawnSync(process.execPath, [script], { encoding: 'utf8', timeout: 50_000, env: { ...process.env, MQTS_EXAMPLE_DIR: dir } })
      assert.equal(r.status, 0, `exit ${r.status} (${r.signal ?? 'no signal'}): ${r.stderr}`)
      assert.match(r.stdout, output)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
}

test("the README's TypeScript blocks are the example files, byte for byte", async () => {
  const blocks = typeScriptBlocks(await readFile(path.join(root, 'README.md'), 'utf8'))
  const files = new Map<string, string>()
  for (const file of Object.keys(expected)) files.set(file, await readFile(path.join(sources, file), 'utf8'))
  for (const [file, text] of files) assert.ok(blocks.includes(text), `README.md quotes examples/src/${file} as it is`)
  for (const block of blocks) assert.ok([...files.values()].includes(block), `README.md block is not an example file:\n${block}`)
})
