/**
 * What the IDS knows of kernel structures: struct layouts resolved once from BTF into typed
 * decoders ({@linkcode resolveLayout}, failing at start-up with the struct and field named),
 * names read from guest memory byte for byte ({@linkcode decodeName}), the xarray behind every
 * `struct idr`, and the walk plans the in-guest walker follows ({@linkcode PlanBuilder}: whole
 * structures or only the fields the views read).
 *
 * @module
 */

export {
  bytesLayout,
  type Decoded,
  type Fields,
  type FieldSpec,
  firstPtr,
  hexInt,
  hexRaw,
  LayoutError,
  offsetOf,
  type Optional,
  optional,
  peekStruct,
  ptr,
  raw,
  readStruct,
  type ResolvedField,
  resolveLayout,
  sint,
  str,
  type StructLayout,
  uint,
} from "./layout.ts";
export { decodeName, hexOf, UNSAFE_CHARACTER } from "./name.ts";
export { type CopyMode, type NodeRef, PlanBuilder } from "./plan.ts";
export { lookupXarray, planXarray, readXarray, resolveXarrayTypes } from "./xarray.ts";
