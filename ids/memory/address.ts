/**
 * Guest kernel addresses as plain numbers, in each guest's own address space.
 *
 * The IDS does its address arithmetic and indexing on doubles, without BigInt. A double holds
 * integers exactly up to 2^53, and a kernel half of 2^56 bytes (x86-64 with 5-level paging)
 * does not fit; so a {@linkcode KAddr} is an address encoded in a few **windows** of at most
 * 2^47 bytes each, the windows of one guest's {@linkcode AddressSpace}:
 *
 * - Window 0 is the 4-level kernel half, [0xffff800000000000, 2^64): the kernel image, modules,
 *   fixmap, and on a 4-level guest the direct map, vmalloc and vmemmap too. Its KAddr is the
 *   offset from 0xffff800000000000, in [0, 2^47), the same in every address space: a 4-level
 *   guest's numbers are what they always were, and kernel symbols (all in window 0) mean the
 *   same in any space.
 * - A guest with 5-level paging (LA57) maps its direct map, vmalloc and vmemmap below that, at
 *   bases its kernel chose at boot (`page_offset_base`, `vmalloc_base`, `vmemmap_base`, KASLR
 *   randomised at 1 GiB granularity anywhere in [0xff00000000000000, 2^64)). Each base below
 *   window 0 opens one more window, window i at KAddr i × 2^48: from the base rounded down to
 *   4 GiB, for 2^47 bytes or up to the next window's start. A KAddr is then i × 2^48 plus the
 *   offset into window i.
 *
 * Between a window's last byte and the next window's first number lie at least 2^47 numbers
 * that decode to no address: a pointer plus a field offset that runs off a window's end, or a
 * `container_of` that runs off its start, lands there and is refused; it never turns into an
 * address of another window. A read that would cross a window's end is refused for the same
 * reason ({@linkcode AddressSpace.contains}).
 *
 * An address is accepted only when it is a canonical kernel address for the guest's paging mode
 * and inside one of its windows: anything else is refused at the border, when a pointer is read
 * from guest memory ({@linkcode AddressSpace.pointerAt}) or a record arrives from the wire. A
 * region larger than 2^47 bytes is seen through its first 2^47 only (5-level vmalloc is 12.8
 * PiB, used from its bottom; the views read nothing of the percpu chunks at its top): what lies
 * beyond is refused with its address named, never read. The space is learned once per session,
 * from what the guest says (`ids/linux/address_space.ts`), and is that guest's only: one guest's
 * lies about its bases cannot change how another's numbers decode. Decoding a 4-level address
 * costs what it did before windows: one comparison of the high word.
 *
 * @module
 */

import { KERNEL_HALF, KERNEL_HALF_LA57 } from "../../protocol/mod.ts";

/** An address in a guest kernel's half, as its {@linkcode AddressSpace} encodes it. */
export type KAddr = number;

const TWO_32 = 2 ** 32;
/** The KAddr numbers of each window: its bytes, then a gap no address decodes into. */
const WINDOW_SPAN = 2 ** 48;
/** The most bytes one window holds: the size of the 4-level kernel half. */
const WINDOW_BYTES = 2 ** 47;
/** The high 32 bits of the first address of window 0 (the 4-level kernel half). */
const TOP_HIGH = Number(KERNEL_HALF >> 32n);
/** The high 32 bits of the first address of the 5-level kernel half. */
const LA57_HIGH = Number(KERNEL_HALF_LA57 >> 32n);
/** Alignment of the bases of the kernel's regions (a PUD, as KASLR places them). */
const REGION_ALIGN = 1n << 30n;
/** Most windows a space has: window 0 and one per region base. */
const MAX_WINDOWS = 4;

const HEX_ADDRESS = /^0x[0-9a-f]{9,16}$/;

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

/**
 * `0x...` form of a value split in a high half (at least 0; at or above 2^32 past 2^64) and a low
 * 32-bit half, without leading zeros.
 */
function hex64(high: number, low: number): string {
  return "0x" + (high >= 0x1000_0000 && high < TWO_32 ? hex32(high) : high.toString(16)) +
    hex32(low);
}

/** The paging modes of x86-64 the IDS knows. */
export type PagingMode = "4-level" | "5-level";

/** One window of an address space, for reports. */
export interface AddressWindow {
  /** What opened it: "kernel half" for window 0, else the base's symbol (`page_offset_base`). */
  name: string;
  /** The base that opened it, `0x...` (the window starts at it rounded down to 4 GiB). */
  base?: string;
  /** Its first address, `0x...`. */
  start: string;
  /** One past its last address, `0x...`. */
  end: string;
}

/** A region base as the guest's kernel holds it, e.g. the value of `page_offset_base`. */
export interface RegionBase {
  /** The kernel variable that holds it. */
  name: string;
  value: bigint;
}

/** A pointer read from guest memory that is neither NULL nor in the guest's kernel windows. */
export class BadPointer {
  /**
   * @param value the pointer as `0x...`
   * @param problem what is wrong with it, as a phrase after the value
   */
  constructor(readonly value: string, readonly problem = "is not a kernel address") {}
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

/**
 * How one guest's kernel addresses map to {@linkcode KAddr} numbers and back (see the module's
 * documentation). Immutable. {@linkcode AddressSpace.FOUR_LEVEL} serves every 4-level guest;
 * {@linkcode AddressSpace.fiveLevel} makes a 5-level guest's from its region bases.
 */
export class AddressSpace {
  /** The space of every 4-level guest: window 0 only. */
  static readonly FOUR_LEVEL: AddressSpace = new AddressSpace("4-level", [
    { name: "kernel half", start: TOP_HIGH, end: TWO_32 },
  ]);

  /**
   * The space of a 5-level guest whose kernel placed its regions at `bases` (the values of
   * `page_offset_base`, `vmalloc_base` and `vmemmap_base`). Whatever the guest reports is
   * hostile: each base must be in the 5-level kernel half and 1 GiB aligned, two bases may not
   * share 4 GiB, and the direct map (`page_offset_base`, the first base) must lie below the
   * 4-level kernel half, where a 5-level kernel always puts it.
   * @throws {RangeError} naming the base that breaks a rule, and its value.
   */
  static fiveLevel(bases: readonly RegionBase[]): AddressSpace {
    const refuse = (problem: string) =>
      new RangeError(`Cannot make the guest's 5-level address space: ${problem}`);
    if (bases.length < 1 || bases.length > MAX_WINDOWS - 1) {
      throw refuse(`${bases.length} bases, expected 1..${MAX_WINDOWS - 1}`);
    }
    const windows: Window[] = [];
    for (const [i, base] of bases.entries()) {
      const what = `${base.name} 0x${base.value.toString(16)}`;
      if (base.value < KERNEL_HALF_LA57 || base.value >= 1n << 64n) {
        throw refuse(`${what} is not in the 5-level kernel half`);
      }
      if (base.value % REGION_ALIGN !== 0n) throw refuse(`${what} is not aligned to 1 GiB`);
      if (base.value >= KERNEL_HALF) {
        if (i === 0) {
          throw refuse(
            `${what} is in the 4-level kernel half, where no 5-level kernel puts its direct map`,
          );
        }
        continue; // window 0 holds it
      }
      const start = Number(base.value >> 32n);
      const same = windows.find((w) => w.start === start);
      if (same) throw refuse(`${what} is in the same 4 GiB as ${same.name}`);
      windows.push({ name: base.name, base: base.value, start, end: 0 });
    }
    windows.sort((a, b) => a.start - b.start);
    windows.forEach((w, i) => {
      w.end = Math.min(w.start + WINDOW_BYTES / TWO_32, windows[i + 1]?.start ?? TOP_HIGH);
    });
    // The direct map first: most pointers lead there, and the lookup tries windows in order.
    const direct = windows.findIndex((w) => w.name === bases[0].name);
    windows.unshift(...windows.splice(direct, 1));
    return new AddressSpace("5-level", [...AddressSpace.FOUR_LEVEL.#windows, ...windows]);
  }

  /** The guest's paging mode. */
  readonly paging: PagingMode;
  /** The first address of the guest's kernel half in its paging mode. */
  readonly kernelHalf: bigint;
  /** Every window, window 0 first (its index is the window's). */
  readonly windows: readonly AddressWindow[];
  readonly #windows: readonly Window[];
  /** Window i: [#starts[i], #ends[i]) in high 32-bit words; window 0 ends at 2^32. */
  readonly #starts: readonly number[];
  readonly #ends: readonly number[];

  private constructor(paging: PagingMode, windows: readonly Window[]) {
    this.paging = paging;
    this.kernelHalf = paging === "4-level" ? KERNEL_HALF : KERNEL_HALF_LA57;
    this.#windows = windows;
    this.#starts = windows.map((w) => w.start);
    this.#ends = windows.map((w) => w.end);
    this.windows = windows.map((w) => ({
      name: w.name,
      ...(w.base === undefined ? {} : { base: `0x${w.base.toString(16)}` }),
      start: hex64(w.start, 0),
      end: w.end === TWO_32 ? "0x10000000000000000" : hex64(w.end, 0),
    }));
  }

  /** Decodes the little-endian pointer at `offset` of `view`. */
  pointerAt(view: DataView, offset: number): Pointer {
    const low = view.getUint32(offset, true);
    const high = view.getUint32(offset + 4, true);
    if (high >= TOP_HIGH) return (high - TOP_HIGH) * TWO_32 + low;
    if (high === 0 && low === 0) return null;
    return this.#below(high, low) ?? this.#bad(high, low);
  }

  /** The KAddr of the 64-bit address `high:low`, or undefined outside the guest's windows. */
  kaddrOf(high: number, low: number): KAddr | undefined {
    if (high >= TOP_HIGH) return (high - TOP_HIGH) * TWO_32 + low;
    return this.#below(high, low);
  }

  /** The KAddr of a 64-bit address, or undefined outside the guest's windows. */
  toKAddr(addr: bigint): KAddr | undefined {
    if (addr < 0n || addr >= 1n << 64n) return undefined;
    return this.kaddrOf(Number(addr >> 32n), Number(addr & 0xffff_ffffn));
  }

  /**
   * The 64-bit address of a KAddr.
   * @throws {RangeError} for a number that is no address of this space (off a window's end).
   */
  fromKAddr(addr: KAddr): bigint {
    const w = this.#window(addr);
    if (w < 0) throw new RangeError(`Cannot use ${this.hex(addr)}: ${this.problem(addr, 1)}`);
    return (BigInt(this.#starts[w]) << 32n) + BigInt(addr - w * WINDOW_SPAN);
  }

  /** Whether all of [addr, addr + len) are addresses of one window of this space. */
  contains(addr: KAddr, len: number): boolean {
    if (addr >= 0 && addr + len <= WINDOW_BYTES) return true; // window 0, in every space
    const w = this.#window(addr);
    return w >= 0 && addr - w * WINDOW_SPAN + len <= this.#bytes(w);
  }

  /**
   * Why [addr, addr + len) is not in one window of this space, or undefined when it is: for a
   * refused read.
   */
  problem(addr: KAddr, len: number): string | undefined {
    if (this.contains(addr, len)) return undefined;
    const w = Number.isSafeInteger(addr) && addr >= 0 ? Math.floor(addr / WINDOW_SPAN) : -1;
    if (w < 0 || w >= this.#starts.length) {
      return `it is no address of the guest's ${this.paging} address space`;
    }
    const where = `the guest's ${this.windows[w].name} window (its end is ${this.windows[w].end})`;
    return addr - w * WINDOW_SPAN < this.#bytes(w)
      ? `it runs past the end of ${where}`
      : `it is past the end of ${where}`;
  }

  /**
   * `0x...` form of a KAddr, for messages and output. A number off a window's end (a pointer
   * plus an offset) is written as the window's start plus its offset, even past 2^64.
   */
  hex(addr: KAddr): string {
    if (addr >= 0 && addr < WINDOW_BYTES) {
      const high = Math.floor(addr / TWO_32);
      return hex64(TOP_HIGH + high, addr - high * TWO_32);
    }
    const w = Math.floor(addr / WINDOW_SPAN);
    if (!Number.isSafeInteger(addr) || w < 0 || w >= this.#starts.length) {
      return `(no address: ${addr})`;
    }
    const offset = addr - w * WINDOW_SPAN;
    const high = Math.floor(offset / TWO_32);
    return hex64(this.#starts[w] + high, offset - high * TWO_32);
  }

  /**
   * The KAddr of a kernel address written as {@linkcode hex} writes it (`0x` and 9 to 16
   * lowercase digits), or undefined for any other text or an address outside the guest's
   * windows: the way back from a view's output without BigInt.
   */
  parseKAddr(text: string): KAddr | undefined {
    if (!HEX_ADDRESS.test(text)) return undefined;
    return this.kaddrOf(parseInt(text.slice(2, -8), 16), parseInt(text.slice(-8), 16));
  }

  /**
   * The address a pointer leads to.
   * @throws {BadPointerError} for NULL or a non-kernel value, naming `where` it was read and
   * the address `of` the structure that holds it.
   */
  follow(pointer: Pointer, where: string, of: KAddr): KAddr {
    if (typeof pointer === "number") return pointer;
    // The message is written only here: following is on every view's path, failing is rare.
    return follow(pointer, `${where} ${this.hex(of)}`);
  }

  /** The window of the address below window 0 `high:low`'s, or undefined. */
  #below(high: number, low: number): KAddr | undefined {
    const starts = this.#starts;
    for (let w = 1; w < starts.length; w++) {
      if (high >= starts[w] && high < this.#ends[w]) {
        return w * WINDOW_SPAN + (high - starts[w]) * TWO_32 + low;
      }
    }
    return undefined;
  }

  #bad(high: number, low: number): BadPointer {
    const value = hex64(high, low);
    return high >= LA57_HIGH && this.paging === "5-level"
      ? new BadPointer(value, "is in no region of the guest's 5-level address space")
      : new BadPointer(value);
  }

  /** The window of a KAddr, or -1 when it is no address of this space. */
  #window(addr: KAddr): number {
    if (addr >= 0 && addr < WINDOW_BYTES) return 0;
    if (!Number.isSafeInteger(addr) || addr < 0) return -1;
    const w = Math.floor(addr / WINDOW_SPAN);
    return w < this.#starts.length && addr - w * WINDOW_SPAN < this.#bytes(w) ? w : -1;
  }

  #bytes(w: number): number {
    return (this.#ends[w] - this.#starts[w]) * TWO_32;
  }
}

/** A window: [start, end) in high 32-bit words, and the base that opened it. */
interface Window {
  name: string;
  base?: bigint;
  start: number;
  end: number;
}

/**
 * The address a pointer leads to.
 * @throws {BadPointerError} for NULL or a non-kernel value, naming `where` it was read (to
 * name the address of the structure that holds it too, use {@linkcode AddressSpace.follow}).
 */
export function follow(pointer: Pointer, where: string): KAddr {
  if (typeof pointer === "number") return pointer;
  throw new BadPointerError(
    pointer === null
      ? `Cannot follow ${where}: it is NULL`
      : `Cannot follow ${where}: ${pointer.value} ${pointer.problem}`,
  );
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
