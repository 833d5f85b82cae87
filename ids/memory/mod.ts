/**
 * Guest memory as the IDS reads it: kernel addresses as plain numbers ({@linkcode KAddr},
 * checked at the border), the copy of a snapshot's memory ({@linkcode MemoryCache}), the one
 * interface every view reads through ({@linkcode GuestMemory}: {@linkcode RemoteMemory} in
 * front of an agent, {@linkcode CachedMemory} over a cache alone), and the IDS's half of delta
 * answers ({@linkcode AnswerRecords}).
 *
 * @module
 */

export {
  AddressSpace,
  BadPointer,
  follow,
  HEX_BYTES,
  hexBytes,
  type KAddr,
  type Pointer,
  type RegionBase,
} from "./address.ts";
export { MemoryCache, PAGE_SIZE, type Span } from "./cache.ts";
export { AnswerBuilder, AnswerRecords, CarriedRunError } from "./delta.ts";
export { CachedMemory, type GuestMemory, GuestReadError, RemoteMemory } from "./guest_memory.ts";
