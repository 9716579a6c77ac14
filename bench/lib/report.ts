import * as fsp from 'node:fs/promises'
import * as os from 'node:os'
import * as path from 'node:path'
import { pathToFileURL } from 'node:url'

/** One measured (or derived) number. `ratio` is value / baseline value when a baseline applies. */
export interface BenchResult {
  name: string
  value: number
  unit: string
  /** What this row is compared against: the baseline's name, or its value (same unit). */
  baseline?: string | number
  ratio?: number
  /** Megabytes (10^6 bytes) per second, where a byte rate makes sense. */
  mbPerSec?: number
  /** Smallest acceptable ratio, when there is a target. */
  target?: number
  pass?: boolean
  /** Free-form remark shown last. */
  note?: string
}

export interface RunOptions {
  quick: boolean
}

/** Signature every bench module exports, so run-all can drive it. */
export type BenchRun = (opts: RunOptions) => Promise<BenchResult[]>

/** Quick mode: BENCH_QUICK=1 in the environment or --quick on the command line. */
export function isQuick(argv: readonly string[] = process.argv, env: NodeJS.ProcessEnv = process.env): boolean {
  return env.BENCH_QUICK === '1' || argv.includes('--quick')
}

/** True when the module whose import.meta.url is given is the script node was started with. */
export function isMain(moduleUrl: string): boolean {
  const script = process.argv[1]
  return script !== undefined && moduleUrl === pathToFileURL(path.resolve(script)).href
}

// ---------------------------------------------------------------------------------------------
// Formatting

export function formatNumber(n: number | undefined, digits?: number): string {
  if (n === undefined || !Number.isFinite(n)) return '-'
  const abs = Math.abs(n)
  const d = digits ?? (abs >= 1000 ? 0 : abs >= 100 ? 1 : abs >= 10 ? 2 : 3)
  return n.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d })
}

export function formatRatio(r: number | undefined): string {
  if (r === undefined || !Number.isFinite(r)) return '-'
  if (r >= 1) return `${r.toFixed(r >= 10 ? 1 : 2)}x`
  return r >= 0.1 ? `${(r * 100).toFixed(1)}%` : `${(r * 100).toFixed(2)}%`
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let v = bytes
  let i = 0
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024
    i++
  }
  return `${Number.isInteger(v) ? v : v.toFixed(1)} ${units[i]}`
}

type Align = 'left' | 'right'

/** Renders rows of cells as a plain-text table with a header rule. */
export function renderTable(header: readonly string[], rows: readonly (readonly string[])[], align?: readonly Align[]): string {
  const text = rows.map((r) => header.map((_, i) => String(r[i] ?? '')))
  const widths = header.map((h, i) => Math.max(h.length, ...text.map((r) => r[i]!.length)))
  const cell = (text: string, i: number): string => ((align?.[i] ?? (i === 0 ? 'left' : 'right')) === 'left' ? text.padEnd(widths[i]!) : text.padStart(widths[i]!))
  const line = (cells: readonly string[]): string => cells.map((c, i) => cell(c, i)).join('  ').trimEnd()
  const rule = widths.map((w) => '-'.repeat(w)).join('  ')
  return [line(header), rule, ...text.map(line)].join('\n')
}

/** Whether any row carries the given optional field; columns nobody uses are left out. */
function uses(rows: readonly BenchResult[], key: keyof BenchResult): boolean {
  return rows.some((r) => r[key] !== undefined)
}

/** Prints results as one table; `group` (for summaries) adds a leading column. */
export function printResults(title: string, rows: readonly BenchResult[], group?: (r: BenchResult) => string): void {
  const cols: { head: string; get: (r: BenchResult) => string; align?: Align }[] = []
  if (group) cols.push({ head: 'bench', get: group, align: 'left' })
  cols.push({ head: 'name', get: (r) => String(r.name), align: 'left' })
  cols.push({ head: 'value', get: (r) => formatNumber(r.value) })
  cols.push({ head: 'unit', get: (r) => String(r.unit ?? ''), align: 'left' })
  if (uses(rows, 'mbPerSec')) cols.push({ head: 'MB/s', get: (r) => formatNumber(r.mbPerSec) })
  if (uses(rows, 'baseline')) cols.push({ head: 'baseline', get: (r) => (typeof r.baseline === 'number' ? formatNumber(r.baseline) : (r.baseline ?? '-')), align: 'left' })
  if (uses(rows, 'ratio')) cols.push({ head: 'ratio', get: (r) => formatRatio(r.ratio) })
  if (uses(rows, 'target')) cols.push({ head: 'target', get: (r) => (r.target === undefined ? '-' : `>= ${formatRatio(r.target)}`) })
  if (uses(rows, 'pass')) cols.push({ head: 'result', get: (r) => (r.pass === undefined ? '-' : r.pass ? 'PASS' : 'FAIL'), align: 'left' })
  if (uses(rows, 'note')) cols.push({ head: 'note', get: (r) => r.note ?? '', align: 'left' })
  const table = renderTable(
    cols.map((c) => c.head),
    rows.map((r) => cols.map((c) => c.get(r))),
    cols.map((c, i) => c.align ?? (i === 0 ? 'left' : 'right')),
  )
  console.log(`\n== ${title} ==\n${table}\n`)
}

/** The `p`th percentile (0-100) of ascending `sorted` samples: the sample at that rank. */
export function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))]!
}

/** Sets `ratio` (and `pass` when a target is given) from a baseline value. */
export function compare(row: BenchResult, baselineName: string, baselineValue: number, target?: number): BenchResult {
  row.baseline = baselineName
  row.ratio = baselineValue > 0 ? row.value / baselineValue : undefined
  if (target !== undefined) {
    row.target = target
    row.pass = row.ratio !== undefined && row.ratio >= target
  }
  return row
}

// ---------------------------------------------------------------------------------------------
// Environment

export interface Environment {
  node: string
  v8: string
  platform: string
  cpu: string
  cores: number
  memory: string
}

export function environment(): Environment {
  const cpus = os.cpus()
  return {
    node: process.version,
    v8: process.versions.v8,
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    cpu: cpus[0]?.model.trim() ?? 'unknown',
    cores: typeof os.availableParallelism === 'function' ? os.availableParallelism() : cpus.length,
    memory: formatBytes(os.totalmem()),
  }
}

/** Prints the environment block: Node, CPU, cores, plus any bench-specific lines (flush mode...). */
export function printEnvironment(title: string, extra: Record<string, string | number | boolean> = {}): void {
  const e = environment()
  const lines: [string, string][] = [
    ['node', `${e.node} (v8 ${e.v8})`],
    ['platform', e.platform],
    ['cpu', e.cpu],
    ['cores', String(e.cores)],
    ['memory', e.memory],
    ...Object.entries(extra).map(([k, v]): [string, string] => [k, String(v)]),
  ]
  const w = Math.max(...lines.map(([k]) => k.length))
  console.log(`# ${title}`)
  for (const [k, v] of lines) console.log(`  ${k.padEnd(w)}  ${v}`)
}

// ---------------------------------------------------------------------------------------------
// Temp dirs

/** Temp directories under os.tmpdir(), removed together by `cleanup()` (safe to call twice). */
export class TempDirs {
  private readonly dirs: string[] = []

  async make(prefix: string): Promise<string> {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), `mqts-bench-${prefix}-`))
    this.dirs.push(dir)
    return dir
  }

  async cleanup(): Promise<void> {
    const dirs = this.dirs.splice(0)
    await Promise.all(dirs.map((d) => fsp.rm(d, { recursive: true, force: true }).catch((err: unknown) => console.error(`could not remove ${d}: ${String(err)}`))))
  }
}

/** Runs `fn` with a fresh temp dir, removing it afterwards whatever happens. */
export async function withTempDir<T>(prefix: string, fn: (dir: string) => Promise<T>): Promise<T> {
  const dirs = new TempDirs()
  try {
    return await fn(await dirs.make(prefix))
  } finally {
    await dirs.cleanup()
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}
