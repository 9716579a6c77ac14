/**
 * Config files as RocketMQ's ConfigManager keeps them: rewritten whole, atomically (temp file,
 * fsync, rename), with the previous good content kept as `<file>.bak` and read when the main file
 * is missing or does not parse.
 */
import { CodedError, messageOf } from './errors.js'
import type { FileIO } from './file-io.js'

/**
 * The parsed content of `file`, or of `file.bak` when the main one is missing, empty or fails
 * `parse`; undefined when neither exists (or both are empty). When one holds something and
 * neither parses: CodedError CONFIG_CORRUPT naming both problems.
 */
export async function readConfigFile<T>(io: FileIO, file: string, parse: (text: string) => T): Promise<T | undefined> {
  const failures: string[] = []
  let firstError: unknown
  for (const candidate of [file, `${file}.bak`]) {
    const data = await io.readFile(candidate)
    if (!data || data.length === 0) continue
    try {
      return parse(data.toString('utf8'))
    } catch (err) {
      // Fall back to the backup, as RocketMQ does.
      failures.push(`${candidate}: ${messageOf(err)}`)
      firstError ??= err
    }
  }
  // Something was there and nothing parsed: starting empty would drop the config (and the next
  // write would replace it), so refuse, as RocketMQ's broker refuses to start.
  if (failures.length > 0) throw new CodedError('CONFIG_CORRUPT', `config file ${file} cannot be read (${failures.join('; ')}); fix or remove it`, { cause: firstError })
  return undefined
}

/** Replaces `file` with `text`, first keeping its current content as `file.bak` if that parses. */
export async function writeConfigFile(io: FileIO, file: string, text: string, parses: (text: string) => boolean): Promise<void> {
  const previous = await io.readFile(file)
  if (previous && previous.length > 0 && parses(previous.toString('utf8'))) await io.writeFileAtomic(`${file}.bak`, previous)
  await io.writeFileAtomic(file, Buffer.from(text, 'utf8'))
}
