/**
 * Config files as RocketMQ's ConfigManager keeps them: rewritten whole, atomically (temp file,
 * fsync, rename), with the previous good content kept as `<file>.bak` and read when the main file
 * is missing or does not parse.
 */
import type { FileIO } from './file-io.js'

/**
 * The parsed content of `file`, or of `file.bak` when the main one is missing, empty or fails
 * `parse`; undefined when neither holds anything that parses.
 */
export async function readConfigFile<T>(io: FileIO, file: string, parse: (text: string) => T): Promise<T | undefined> {
  for (const candidate of [file, `${file}.bak`]) {
    const data = await io.readFile(candidate)
    if (!data || data.length === 0) continue
    try {
      return parse(data.toString('utf8'))
    } catch {
      // Fall back to the backup, as RocketMQ does.
    }
  }
  return undefined
}

/** Replaces `file` with `text`, first keeping its current content as `file.bak` if that parses. */
export async function writeConfigFile(io: FileIO, file: string, text: string, parses: (text: string) => boolean): Promise<void> {
  const previous = await io.readFile(file)
  if (previous && previous.length > 0 && parses(previous.toString('utf8'))) await io.writeFileAtomic(`${file}.bak`, previous)
  await io.writeFileAtomic(file, Buffer.from(text, 'utf8'))
}
