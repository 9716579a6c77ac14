/** The simulated disk lives in @mqts/common, shared with the key index's tests. */
export { SECTOR_BYTES, SimFileIO, type SimFileIOOptions } from '@mqts/common'
