/**
 * Parsing raw BTF into a {@linkcode Btf}.
 *
 * @module
 */

import { Btf } from "./btf.ts";
import { BtfError } from "./btf_error.ts";
import {
  BTF_MAGIC,
  BTF_VERSION,
  FIXED_WORDS,
  HEADER_SIZE,
  isModifier,
  KIND_ARRAY,
  KIND_DATASEC,
  KIND_DECL_TAG,
  KIND_ENUM,
  KIND_ENUM64,
  KIND_FLOAT,
  KIND_FUNC_PROTO,
  KIND_FWD,
  KIND_INT,
  KIND_MAX,
  KIND_NAMES,
  KIND_STRUCT,
  KIND_UNION,
  MAX_CHAIN,
  TYPE_HEADER_WORDS,
  VLEN_WORDS,
} from "./_format.ts";

/**
 * Parses raw little-endian BTF, such as a kernel's `/sys/kernel/btf/vmlinux`.
 *
 * The input is treated as hostile: the header, both sections, every type record, every string
 * offset and type id, and every modifier chain are checked here, so that nothing read later
 * from the result can leave the sections or loop. The result keeps views of `bytes` rather
 * than copies: the caller hands `bytes` over and must not change it afterwards (a buffer the
 * guest can still write to must be copied first). Names are decoded only when asked for.
 *
 * @throws {BtfError} naming the problem and where it is, for malformed BTF.
 */
export function parseBtf(bytes: Uint8Array): Btf {
  const { dataStart, typeOff, typeLen, strOff, strLen } = readHeader(bytes);
  const strings = bytes.subarray(dataStart + strOff, dataStart + strOff + strLen);
  if (strings[0] !== 0) fail("the string section does not start with an empty string");
  if (strings[strLen - 1] !== 0) fail("the string section does not end with NUL");
  const typeStart = bytes.byteOffset + dataStart + typeOff;
  // A Uint32Array view needs 4-aligned words; copy the type section only when they are not.
  const words = typeStart % 4 === 0
    ? new Uint32Array(bytes.buffer, typeStart, typeLen / 4)
    : new Uint32Array(bytes.slice(dataStart + typeOff, dataStart + typeOff + typeLen).buffer);
  const { starts, kinds, count } = scanTypes(words, strLen);
  const resolved = resolveModifiers(words, starts, kinds, count);
  return new Btf({ words, starts, kinds, resolved, strings, count });
}

interface Header {
  dataStart: number;
  typeOff: number;
  typeLen: number;
  strOff: number;
  strLen: number;
}

function fail(problem: string): never {
  throw new BtfError(`Cannot parse BTF: ${problem}`);
}

function u32(bytes: Uint8Array, at: number): number {
  return (bytes[at] | bytes[at + 1] << 8 | bytes[at + 2] << 16 | bytes[at + 3] << 24) >>> 0;
}

function readHeader(bytes: Uint8Array): Header {
  if (bytes.length < HEADER_SIZE) {
    fail(`${bytes.length} bytes are too few for the ${HEADER_SIZE}-byte header`);
  }
  const magic = bytes[0] | bytes[1] << 8;
  if (magic === 0x9feb) fail("big-endian BTF (magic 0x9feb) is not supported");
  if (magic !== BTF_MAGIC) fail(`bad magic 0x${hex(magic)}, expected 0x${hex(BTF_MAGIC)}`);
  if (bytes[2] !== BTF_VERSION) fail(`unsupported version ${bytes[2]}, expected ${BTF_VERSION}`);
  if (bytes[3] !== 0) fail(`unsupported header flags 0x${hex(bytes[3])}`);
  const hdrLen = u32(bytes, 4);
  if (hdrLen < HEADER_SIZE) fail(`header length ${hdrLen} is below ${HEADER_SIZE}`);
  if (hdrLen > bytes.length) {
    fail(`header length ${hdrLen} extends past the ${bytes.length}-byte buffer`);
  }
  const header = {
    dataStart: hdrLen,
    typeOff: u32(bytes, 8),
    typeLen: u32(bytes, 12),
    strOff: u32(bytes, 16),
    strLen: u32(bytes, 20),
  };
  const room = bytes.length - hdrLen;
  checkSection("type", header.typeOff, header.typeLen, room);
  checkSection("string", header.strOff, header.strLen, room);
  if (header.typeOff % 4 !== 0) fail(`type section offset ${header.typeOff} is not 4-aligned`);
  if (header.typeLen % 4 !== 0) {
    fail(`type section length ${header.typeLen} is not a multiple of 4`);
  }
  if (header.strLen === 0) fail("the string section is empty");
  if (
    header.typeOff < header.strOff + header.strLen &&
    header.strOff < header.typeOff + header.typeLen
  ) {
    fail("the type and string sections overlap");
  }
  return header;
}

function checkSection(name: string, offset: number, length: number, room: number): void {
  if (offset + length > room) {
    fail(
      `the ${name} section (offset ${offset}, length ${length}) extends past the ${room} bytes ` +
        "after the header",
    );
  }
}

function hex(n: number): string {
  return n.toString(16).padStart(2, "0");
}

interface Scan {
  starts: Uint32Array;
  kinds: Uint8Array;
  count: number;
}

/** Walks the type records once: bounds, kinds, string offsets and the largest type id used. */
function scanTypes(words: Uint32Array, strLen: number): Scan {
  const total = words.length;
  const capacity = Math.floor(total / TYPE_HEADER_WORDS) + 1;
  const starts = new Uint32Array(capacity);
  const kinds = new Uint8Array(capacity);
  let maxRef = 0;
  let maxRefBy = 0;
  let id = 0;
  let w = 0;
  while (w < total) {
    id++;
    if (w + TYPE_HEADER_WORDS > total) fail(`type ${id} extends past the type section`);
    const info = words[w + 1];
    const kind = info >>> 24 & 0x1f;
    if (kind === 0 || kind > KIND_MAX) fail(`type ${id} has unknown kind ${kind}`);
    const vlen = info & 0xffff;
    const end = w + TYPE_HEADER_WORDS + FIXED_WORDS[kind] + vlen * VLEN_WORDS[kind];
    if (end > total) fail(`${describe(id, kind)} extends past the type section`);
    if (words[w] >= strLen) {
      fail(`${describe(id, kind)} has name offset ${words[w]} outside the string section`);
    }
    // The third word is a size for sized kinds, unused for FWD, a type id for the rest.
    let ref = 0;
    switch (kind) {
      case KIND_INT:
        checkInt(words[w + 2], words[w + 3], id);
        break;
      case KIND_ARRAY:
        ref = Math.max(words[w + 3], words[w + 4]);
        break;
      case KIND_STRUCT:
      case KIND_UNION:
      case KIND_ENUM:
      case KIND_ENUM64:
      case KIND_DATASEC:
      case KIND_FLOAT:
      case KIND_FWD:
        break;
      case KIND_DECL_TAG:
        if ((words[w + 3] | 0) < -1) {
          fail(`${describe(id, kind)} has component index ${words[w + 3] | 0}`);
        }
        ref = words[w + 2];
        break;
      default:
        ref = words[w + 2];
    }
    const step = VLEN_WORDS[kind];
    if (step !== 0) {
      const first = w + TYPE_HEADER_WORDS + FIXED_WORDS[kind];
      // DATASEC entries are (type, offset, size); the others start with a name offset.
      const named = kind !== KIND_DATASEC;
      const typed = kind === KIND_STRUCT || kind === KIND_UNION || kind === KIND_FUNC_PROTO;
      for (let i = 0, m = first; i < vlen; i++, m += step) {
        if (named && words[m] >= strLen) {
          const entry = `${describe(id, kind)} entry ${i}`;
          fail(`${entry} has name offset ${words[m]} outside the string section`);
        }
        if (typed && words[m + 1] > ref) ref = words[m + 1];
        if (!named && words[m] > ref) ref = words[m];
      }
    }
    if (ref > maxRef) {
      maxRef = ref;
      maxRefBy = id;
    }
    starts[id] = w;
    kinds[id] = kind;
    w = end;
  }
  if (maxRef > id) {
    fail(
      `${describe(maxRefBy, kinds[maxRefBy])} refers to type ${maxRef}, ` +
        `but the last type is ${id}`,
    );
  }
  return { starts, kinds, count: id };
}

function describe(id: number, kind: number): string {
  return `type ${id} (${KIND_NAMES[kind]})`;
}

function checkInt(size: number, data: number, id: number): void {
  const bits = data & 0xff;
  const offset = data >>> 16 & 0xff;
  if (size !== 1 && size !== 2 && size !== 4 && size !== 8 && size !== 16) {
    fail(`${describe(id, KIND_INT)} has size ${size}`);
  }
  if (offset + bits > size * 8) {
    fail(`${describe(id, KIND_INT)} has ${bits} bits at bit ${offset} of ${size} bytes`);
  }
}

/** Follows every modifier chain to its end, failing on loops and overlong chains. */
function resolveModifiers(
  words: Uint32Array,
  starts: Uint32Array,
  kinds: Uint8Array,
  count: number,
): Uint32Array {
  const resolved = new Uint32Array(count + 1);
  for (let id = 1; id <= count; id++) {
    let target = id;
    for (let links = 0; isModifier(kinds[target]); links++) {
      if (links === MAX_CHAIN) {
        fail(
          `${describe(id, kinds[id])} starts a modifier chain that loops or is ` +
            `longer than ${MAX_CHAIN} links`,
        );
      }
      target = words[starts[target] + 2];
    }
    resolved[id] = target;
  }
  return resolved;
}
