/**
 * Runs every bench module (each exports `run(opts)` returning rows), prints each one's table as it
 * finishes and one summary table at the end. Optional modules missing from dist are skipped.
 */
import * as fs from 'node:fs'
import { performance } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import { isMain, isQuick, printEnvironment, printResults, type BenchResult, type BenchRun, type RunOptions } from './lib/report.js'

interface Module {
  name: string
  file: string
  /** Skipped, not an error, when its compiled file is absent. */
  optional?: boolean
}

const MODULES: Module[] = [
  { name: 'crc', file: './crc.bench.js' },
  { name: 'store', file: './store.bench.js' },
  { name: 'index', file: './index.bench.js' },
  { name: 'transport', file: './transport.bench.js', optional: true },
  { name: 'broker', file: './broker.bench.js', optional: true },
  { name: 'client', file: './client.bench.js', optional: true },
  { name: 'ha', file: './ha.bench.js', optional: true },
]

interface Tagged extends BenchResult {
  bench: string
}

export async function run(opts: RunOptions): Promise<Tagged[]> {
  const all: Tagged[] = []
  for (const m of MODULES) {
    const url = new URL(m.file, import.meta.url)
    if (!fs.existsSync(fileURLToPath(url))) {
      if (m.optional) {
        console.log(`\n-- ${m.name}: ${m.file} not built, skipped`)
        continue
      }
      all.push({ bench: m.name, name: 'module missing', value: NaN, unit: '-', pass: false, note: `${m.file} not found` })
      continue
    }
    console.log(`\n-- ${m.name} --`)
    const t0 = performance.now()
    try {
      const mod = (await import(url.href)) as { run?: BenchRun }
      if (typeof mod.run !== 'function') throw new Error(`${m.file} does not export run(opts)`)
      const rows = await mod.run(opts)
      printResults(`${m.name} (${((performance.now() - t0) / 1000).toFixed(1)} s)`, rows)
      for (const r of rows) all.push({ ...r, bench: m.name })
    } catch (err) {
      console.error(`${m.name} failed:`, err)
      all.push({ bench: m.name, name: 'run failed', value: NaN, unit: '-', pass: false, note: err instanceof Error ? err.message : String(err) })
    }
  }
  return all
}

if (isMain(import.meta.url)) {
  const quick = isQuick()
  printEnvironment('mqts benchmarks', { mode: quick ? 'quick' : 'full', modules: MODULES.map((m) => m.name + (m.optional ? ' (if built)' : '')).join(', ') })
  const rows = await run({ quick })
  printResults('Summary', rows, (r) => (r as Tagged).bench)
  const failed = rows.filter((r) => r.pass === false)
  console.log(failed.length === 0 ? 'all targets met' : `${failed.length} row(s) below target or failed: ${failed.map((r) => `${(r as Tagged).bench}/${r.name}`).join(', ')}`)
}
