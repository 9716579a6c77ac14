/**
 * @mqts/common: what several mqts packages need once. Typed errors with a stable code, 64-bit
 * big-endian fields, the Java string hash, memory-map helpers, the file seam (FileIO: the real
 * disk and a simulated one) and seeded randomness.
 * Test scaffolding (small tmpfs mounts, temp dirs) is in `@mqts/common/testing`.
 */
export { CodedError, isDiskFull, messageOf, osErrorCode, type CodedErrorOptions } from './errors.js'
export { TWO_POW_32, readI64, readI64View, writeI64, writeU64, writeU64View } from './int64.js'
export { javaHashContinue, javaStringHashCode } from './java-hash.js'
export { MADV_POPULATE_WRITE, MAX_MAP_BYTES, PAGE_BYTES, canPopulateWrite, forceGc, mmapErrno, mmapIo, setPopulateWriteForTests, type MmapIo } from './mmap.js'
export { countFromEnv, pick, randomBytes, randomInt, seedFromEnv, seededRandom } from './random.js'
export { NodeFileIO, reclaimMappings, type BackgroundPopulator, type DataFile, type DataSeeker, type DiskUsage, type FileIO, type PlainNodeFileIOOptions } from './file-io.js'
export { readConfigFile, writeConfigFile } from './config-file.js'
export { UniqueIdGenerator, firstIPv4 } from './unique-id.js'
export { SECTOR_BYTES, SimFileIO, type SimFileIOOptions } from './sim-file-io.js'
