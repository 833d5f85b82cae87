/**
 * Guest kernel addresses as plain numbers.
 *
 * Kernel virtual addresses on x86-64 (4-level paging) live in the upper canonical half,
 * [0xffff800000000000, 2^64). A {@linkcode KAddr} is the offset of such an address from the
 * start of that half: an integer below 2^47, exact in a double, so the IDS does its address
 * arithmetic and indexing without BigInt. Anything outside the kernel half is refused at the
 * border, when a pointer is read from guest memory or a record arrives from the wire.
 *
 * @module
 */

import { KERNEL_HALF } from "../../protocol/mod.ts";

/** An address in the guest kernel's half, as an offset from {@linkcode KERNEL_BASE}. */
export type KAddr = number;

/** The first address of the kernel half. */
export const KERNEL_BASE: bigint = KERNEL_HALF;
/** The high 32 bits of {@linkcode KERNEL_BASE}: a 64-bit value is in the kernel half when its high half is at least this. */
export const KERNEL_BASE_HIGH = Number(KERNEL_BASE >> 32n);
const BASE_HIGH = KERNEL_BASE_HIGH;
const TWO_32 = 2 ** 32;
/** One past the largest KAddr (the kernel half is 2^47 bytes). */
export const KADDR_END = 2 ** 47;

/** The KAddr of a 64-bit address, or undefined when it is not in the kernel half. */
export function toKAddr(addr: bigint): KAddr | undefined {
  if (addr < KERNEL_BASE || addr >= 1n << 64n) return undefined;
  return Number(addr - KERNEL_BASE);
}

/** The 64-bit address of a KAddr. */
export function fromKAddr(addr: KAddr): bigint {
  return KERNEL_BASE + BigInt(addr);
}

/** `0xffff...` form of a KAddr, for messages and output. */
export function hex(addr: KAddr): string {
  const high = Math.floor(addr / TWO_32);
  return hex64(BASE_HIGH + high, addr - high * TWO_32);
}

/** The KAddr of the 64-bit address `high:low`, or undefined outside the kernel half. */
export function kaddrOf(high: number, low: number): KAddr | undefined {
  return high >= BASE_HIGH ? (high - BASE_HIGH) * TWO_32 + low : undefined;
}

const HEX_ADDRESS = /^0x[0-9a-f]{9,16}$/;

/**
 * The KAddr of a kernel address written as {@linkcode hex} writes it (`0xffff...`), or
 * undefined for any other text: the way back from a view's output without BigInt.
 */
export function parseKAddr(text: string): KAddr | undefined {
  if (!HEX_ADDRESS.test(text)) return undefined;
  return kaddrOf(parseInt(text.slice(2, -8), 16), parseInt(text.slice(-8), 16));
}

/** Two lowercase hex digits per byte value: formatting addresses is on every view's path. */
export const HEX_BYTES: readonly string[] = Array.from(
  { length: 256 },
  (_, i) => i.toString(16).padStart(2, "0"),
);

/** Eight hex digits of a u32. */
function hex32(v: number): string {
  return HEX_BYTES[v >>> 24] + HEX_BYTES[(v >>> 16) & 0xff] + HEX_BYTES[(v >>> 8) & 0xff] +
    HEX_BYTES[v & 0xff];
}

/** `0x...` form of any 64-bit value split in two halves (no leading zeros in the high half). */
function hex64(high: number, low: number): string {
  return "0x" + (high >= 0x1000_0000 ? hex32(high) : high.toString(16)) + hex32(low);
}

/**
 * Hex digits of `bytes`, two per byte: in memory order, or most significant first for a
 * little-endian number.
 */
export function hexBytes(bytes: Uint8Array, order: "memory" | "little-endian" = "memory"): string {
  let out = "";
  if (order === "memory") { for (const b of bytes) out += HEX_BYTES[b]; }
  else for (let i = bytes.length - 1; i >= 0; i--) out += HEX_BYTES[bytes[i]];
  return out;
}

/** A pointer read from guest memory that is neither NULL nor in the kernel half. */
export class BadPointer {
  constructor(readonly value: string) {}
}

/** A decoded pointer field: a kernel address, NULL, or something else. */
export type Pointer = KAddr | null | BadPointer;

/** Following a pointer that does not lead to kernel memory. */
export class BadPointerError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "BadPointerError";
  }
}

/** Decodes the little-endian pointer at `offset`. */
export function pointerAt(view: DataView, offset: number): Pointer {
  const low = view.getUint32(offset, true);
  const high = view.getUint32(offset + 4, true);
  if (high >= BASE_HIGH) return (high - BASE_HIGH) * TWO_32 + low;
  if (high === 0 && low === 0) return null;
  return new BadPointer(hex64(high, low));
}

/**
 * The address a pointer leads to.
 * @throws {BadPointerError} for NULL or a non-kernel value, naming `where` it was read (with
 * the address `of` the structure that holds it, when given).
 */
export function follow(pointer: Pointer, where: string, of?: KAddr): KAddr {
  if (typeof pointer === "number") return pointer;
  // The message is written only here: following is on every view's path, failing is rare.
  const what = of === undefined ? where : `${where} ${hex(of)}`;
  throw new BadPointerError(
    pointer === null
      ? `Cannot follow ${what}: it is NULL`
      : `Cannot follow ${what}: ${pointer.value} is not a kernel address`,
  );
}
