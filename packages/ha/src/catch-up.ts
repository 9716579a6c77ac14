/**
 * Whether a replica link is in sync (RocketMQ 5's rule for its in-sync state set, with
 * haMaxTimeSlaveNotCatchup): a link caught up at time t when it acknowledged everything the master
 * had when it sent to it at t. It is in sync while it caught up within the last
 * `maxTimeNotCaughtUpMs`: it joins once it acknowledges the master's end as of a send that recent,
 * and leaves once part of what the master had `maxTimeNotCaughtUpMs` ago is still unacknowledged,
 * or it is `maxGapNotInSync` bytes behind. A connection only counts once it acknowledges what it
 * was sent: one that keeps reporting the same offset never joins, or leaves.
 *
 * Each time bytes go out the master's end is noted with the time (also when a link starts); an
 * acknowledgement spends the notes it reaches, so the oldest note left says since when the replica
 * lacks something.
 */

interface Note {
  /** The master's end when it sent. */
  end: number
  at: number
}

/** Notes closer together than this are merged (a busy link sends thousands of frames a second). */
const NOTE_SPACING_MS = 10
/** At most this many notes; past it they are merged into the last one. */
const MAX_NOTES = 4096

export type InSyncChange = { joined: true } | { joined: false; why: string }

export class CatchUp {
  inSync = false
  readonly #notes: Note[] = []
  /** Index of the oldest note still unacknowledged (notes before it are spent). */
  #first = 0
  /** The time of the newest note spent: the replica held everything the master had then. */
  #caughtUpAt: number | undefined

  /** Bytes went out while the master's log ended at `end`. */
  sent(end: number, now: number): void {
    const last = this.#notes.length > this.#first ? this.#notes[this.#notes.length - 1]! : undefined
    if (last && end <= last.end) return
    if (last && (now - last.at < NOTE_SPACING_MS || this.#notes.length - this.#first >= MAX_NOTES)) {
      // Merged: the note keeps its time, so the lag read from it is never less than the truth.
      last.end = end
      return
    }
    this.#notes.push({ end, at: now })
  }

  /** The replica acknowledged `offset`: the notes it reaches are spent. */
  acknowledged(offset: number): void {
    while (this.#first < this.#notes.length && this.#notes[this.#first]!.end <= offset) {
      this.#caughtUpAt = this.#notes[this.#first]!.at
      this.#first++
    }
    if (this.#first === this.#notes.length) {
      this.#notes.length = 0
      this.#first = 0
    } else if (this.#first > 1024) {
      this.#notes.splice(0, this.#first)
      this.#first = 0
    }
  }

  /**
   * Moves the link into or out of the in-sync set at `now`; what changed, if anything. `gap` is
   * how far its acknowledged offset is behind the master's end.
   */
  update(now: number, gap: number, maxTimeNotCaughtUpMs: number, maxGapNotInSync: number): InSyncChange | undefined {
    const oldest = this.#notes[this.#first]
    let why: string | undefined
    if (this.#caughtUpAt === undefined) why = 'it has not caught up yet'
    else if (gap >= maxGapNotInSync) why = `${gap} bytes behind (haMaxGapNotInSync ${maxGapNotInSync})`
    else if (oldest && now - oldest.at > maxTimeNotCaughtUpMs) why = `it has not caught up for ${now - oldest.at} ms (haMaxTimeSlaveNotCatchup ${maxTimeNotCaughtUpMs})`
    const inSync = why === undefined
    if (inSync === this.inSync) return undefined
    this.inSync = inSync
    return inSync ? { joined: true } : { joined: false, why: why! }
  }
}
