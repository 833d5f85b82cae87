import { assert, assertEquals, assertThrows } from "../tests/support/mod.ts";
import fc from "fast-check";
import {
  type AgentInfo,
  DataFrameBuilder,
  dataRecords,
  encodeFrame,
  ErrorCode,
  type Frame,
  FrameDecoder,
  FrameError,
  FrameType,
  HoldState,
  LIMITS,
  parseFrame,
  PrefetchTarget,
  StopReason,
} from "./mod.ts";

const u32 = fc.integer({ min: 0, max: 0xffff_ffff });
const u64 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });
const safe = fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER });
const text = fc.string({ maxLength: 200 });

const agentInfo: fc.Arbitrary<AgentInfo> = fc.record({
  kernelRelease: text,
  btfHash: fc.uint8Array({ minLength: 32, maxLength: 32 }),
  btfSize: fc.integer({ min: 0, max: LIMITS.maxBtf }),
  bootId: text,
  anchor: u64,
  agentPid: u32,
  programs: text,
  features: fc.array(text, { maxLength: 4 }),
});

const frame: fc.Arbitrary<Frame> = fc.oneof(
  fc.record({
    type: fc.constant(FrameType.HELLO),
    id: u32,
    version: fc.integer({ min: 0, max: 0xffff }),
  }),
  fc.record({
    type: fc.constant(FrameType.HELLO),
    id: u32,
    version: fc.integer({ min: 0, max: 0xffff }),
    agent: agentInfo,
  }),
  fc.record({ type: fc.constant(FrameType.GET_BTF), id: u32 }),
  fc.record({ type: fc.constant(FrameType.READ), id: u32, addr: u64, len: u32 }),
  fc.record({
    type: fc.constant(FrameType.PREFETCH),
    id: u32,
    target: fc.constantFrom(PrefetchTarget.TASKS, PrefetchTarget.PLAN),
    maxObjects: u32,
    maxBytes: u32,
    plan: fc.uint8Array({ maxLength: 300 }),
    delta: fc.record({ base: u32 }),
  }, { requiredKeys: ["type", "id", "target", "maxObjects", "maxBytes", "plan"] }),
  fc.record({
    type: fc.constant(FrameType.SYMBOLS),
    id: u32,
    names: fc.array(text, { maxLength: 8 }),
  }),
  fc.record({
    type: fc.constant(FrameType.SYMBOLS),
    id: u32,
    symbols: fc.array(fc.tuple(text, u64), { maxLength: 8 }),
  }),
  fc.record({
    type: fc.constant(FrameType.SYMBOLS),
    id: u32,
    addresses: fc.array(u64, { maxLength: 8 }),
  }),
  fc.record({
    type: fc.constant(FrameType.SYMBOLS),
    id: u32,
    at: fc.array(fc.tuple(u64, text), { maxLength: 8 }),
  }),
  fc.record({
    type: fc.constant(FrameType.HOLD),
    id: u32,
    maxMs: fc.integer({ min: 1, max: LIMITS.maxHoldMs }),
  }),
  fc.record({ type: fc.constant(FrameType.RELEASE), id: u32 }),
  fc.record({
    type: fc.constant(FrameType.HELD),
    id: u32,
    hold: fc.record({
      state: fc.constantFrom(...Object.values(HoldState)),
      capMs: fc.integer({ min: 0, max: LIMITS.maxHoldMs }),
      freezeNs: safe,
      heldNs: safe,
    }),
  }),
  fc.record({
    type: fc.constant(FrameType.DATA),
    id: u32,
    payload: fc.uint8Array({ maxLength: 300 }),
  }),
  fc.record({
    type: fc.constant(FrameType.LOAD),
    id: u32,
    object: fc.uint8Array({ minLength: 1, maxLength: 300 }),
  }),
  fc.record({ type: fc.constant(FrameType.UNLOAD), id: u32 }),
  fc.record({
    type: fc.constant(FrameType.LOADED),
    id: u32,
    loaded: fc.record({
      anchor: u64,
      programs: fc.array(
        fc.record({
          name: text,
          section: text,
          type: text,
          tag: fc.stringMatching(/^[0-9a-f]{16}$/),
          instructions: u32,
        }),
        { maxLength: 4 },
      ),
    }),
  }),
  fc.record({ type: fc.constant(FrameType.LOG), id: u32, text: fc.uint8Array({ maxLength: 300 }) }),
  fc.uint8Array({ maxLength: 300 }).chain((bytes) =>
    fc.record({
      type: fc.constant(FrameType.BTF),
      id: u32,
      offset: fc.integer({ min: 0, max: 1000 }),
      bytes: fc.constant(bytes),
    }).map((f) => ({ ...f, total: f.offset + bytes.length + 7 }))
  ),
  fc.record({
    type: fc.constant(FrameType.END),
    id: u32,
    stats: fc.record({
      objects: u32,
      bytes: safe,
      faults: u32,
      pruned: u32,
      guestNs: safe,
      agentNs: safe,
      stop: fc.constantFrom(...Object.values(StopReason)),
      root: u64,
      generation: fc.integer({ min: 1, max: 0xffff_ffff }),
      carried: fc.integer({ min: 1, max: 0xffff_ffff }),
    }, {
      requiredKeys: ["objects", "bytes", "faults", "pruned", "guestNs", "agentNs", "stop", "root"],
    }),
  }),
  fc.record({
    type: fc.constant(FrameType.ERROR),
    id: u32,
    code: fc.integer({ min: 0, max: 0xffff }),
    message: text,
  }),
);

function decodeAll(bytes: Uint8Array, cuts: number[] = []): Frame[] {
  const decoder = new FrameDecoder();
  const frames: Frame[] = [];
  let at = 0;
  for (const cut of [...cuts.filter((c) => c < bytes.length).sort((a, b) => a - b), bytes.length]) {
    decoder.push(bytes.subarray(at, Math.max(at, cut)));
    at = Math.max(at, cut);
    for (let raw = decoder.next(); raw; raw = decoder.next()) frames.push(parseFrame(raw));
  }
  return frames;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

Deno.test("a HELLO announcing more BTF than the limit is refused before anything is allocated", () => {
  const agent = {
    kernelRelease: "6.1.0",
    btfHash: new Uint8Array(32),
    btfSize: LIMITS.maxBtf + 1,
    bootId: "b",
    anchor: 0xffff_8880_0000_0000n,
    agentPid: 1,
    programs: "",
    features: [],
  };
  const bytes = encodeFrame({ type: FrameType.HELLO, id: 0, version: 1, agent });
  const error = assertThrows(() => decodeAll(bytes), FrameError);
  assert(error.message.includes(`exceeds the limit ${LIMITS.maxBtf}`), error.message);
});

Deno.test("encodeFrame() and the decoder round-trip every frame type, whatever the chunking", () => {
  fc.assert(
    fc.property(
      fc.array(frame, { maxLength: 8 }),
      fc.array(fc.nat(4000), { maxLength: 10 }),
      (frames, cuts) => {
        const decoded = decodeAll(concat(frames.map(encodeFrame)), cuts);
        assertEquals(decoded.length, frames.length);
        decoded.forEach((d, i) => assertEquals(normalize(d), normalize(frames[i])));
      },
    ),
  );
});

function normalize(f: Frame): unknown {
  return JSON.parse(
    JSON.stringify(
      f,
      (_, v) => typeof v === "bigint" ? `${v}n` : v instanceof Uint8Array ? [...v] : v,
    ),
  );
}

Deno.test("FrameDecoder waits for a frame's last byte before returning it", () => {
  const bytes = encodeFrame({ type: FrameType.READ, id: 7, addr: 0xffff888000001000n, len: 4096 });
  const decoder = new FrameDecoder();
  for (let i = 0; i < bytes.length - 1; i++) {
    decoder.push(bytes.subarray(i, i + 1));
    assertEquals(decoder.next(), undefined);
  }
  decoder.push(bytes.subarray(bytes.length - 1));
  const frame = parseFrame(decoder.next()!);
  assertEquals(frame.type, FrameType.READ);
  assertEquals(decoder.buffered, 0);
});

Deno.test("FrameDecoder refuses an oversized length before buffering its payload", () => {
  const decoder = new FrameDecoder({ maxFrame: 1024 });
  const header = new Uint8Array(9);
  new DataView(header.buffer).setUint32(0, 1025, true);
  decoder.push(header);
  const error = assertThrows(() => decoder.next(), FrameError);
  assert(error.fatal, "an oversized frame is fatal");
  assertEquals(error.code, ErrorCode.TOO_LARGE);
});

Deno.test("FrameDecoder refuses a length too short to hold a type and an id", () => {
  const decoder = new FrameDecoder();
  decoder.push(new Uint8Array([2, 0, 0, 0, 1, 0]));
  assertThrows(() => decoder.next(), FrameError);
});

Deno.test("parseFrame() rejects every truncation of a valid frame with a FrameError", () => {
  fc.assert(
    fc.property(frame, fc.nat(), (f, seed) => {
      const bytes = encodeFrame(f);
      const payload = bytes.subarray(9);
      if (payload.length === 0) return;
      const cut = seed % payload.length;
      const raw = { type: bytes[4], id: f.id, payload: payload.subarray(0, cut) };
      // DATA and LOG payloads have no fixed shape; HELLO without the agent part is valid at 2.
      if (f.type === FrameType.DATA || f.type === FrameType.LOG) return;
      if (f.type === FrameType.HELLO && cut === 2) return;
      if (f.type === FrameType.PREFETCH && cut >= 14) return; // the plan is the rest
      if (f.type === FrameType.BTF && cut >= 8) return;
      assertThrows(() => parseFrame(raw), FrameError);
    }),
  );
});

Deno.test("parseFrame() answers garbage with a FrameError or a frame, never another exception", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 255 }),
      fc.uint8Array({ maxLength: 200 }),
      (type, payload) => {
        try {
          parseFrame({ type, id: 1, payload });
        } catch (error) {
          assert(
            error instanceof FrameError,
            `unexpected ${(error as Error).name}: ${(error as Error).message}`,
          );
        }
      },
    ),
    { numRuns: 2000 },
  );
});

Deno.test("parseFrame() names an unknown type and keeps the request id", () => {
  const error = assertThrows(
    () => parseFrame({ type: 0x7e, id: 42, payload: new Uint8Array() }),
    FrameError,
  );
  assertEquals(error.code, ErrorCode.UNKNOWN_TYPE);
  assertEquals(error.id, 42);
  assert(error.message.includes("0x7e"));
  assert(!error.fatal);
});

Deno.test("parseFrame() rejects trailing bytes and an unknown prefetch target", () => {
  const read = encodeFrame({ type: FrameType.READ, id: 1, addr: 1n, len: 2 });
  const longer = new Uint8Array(read.length + 1);
  longer.set(read);
  assertThrows(
    () => parseFrame({ type: FrameType.READ, id: 1, payload: longer.subarray(9) }),
    FrameError,
  );
  const prefetch = encodeFrame({
    type: FrameType.PREFETCH,
    id: 1,
    target: PrefetchTarget.TASKS,
    maxObjects: 1,
    maxBytes: 1,
    plan: new Uint8Array(),
  });
  prefetch[9] = 99;
  const error = assertThrows(
    () => parseFrame({ type: FrameType.PREFETCH, id: 1, payload: prefetch.subarray(9) }),
    FrameError,
  );
  assertEquals(error.code, ErrorCode.UNSUPPORTED);
});

/** The payload of `frame` as encoded, with `edit` applied to a copy of it. */
function payloadOf(frame: Frame, edit: (view: DataView) => void = () => {}): Uint8Array {
  const payload = encodeFrame(frame).slice(9);
  edit(new DataView(payload.buffer));
  return payload;
}

Deno.test("parseFrame() holds a HOLD's maxMs to 1..LIMITS.maxHoldMs and names the bound", () => {
  const hold = { type: FrameType.HOLD, id: 3, maxMs: 1 } as const;
  for (const maxMs of [0, LIMITS.maxHoldMs + 1, 0xffff_ffff]) {
    const payload = payloadOf(hold, (v) => v.setUint32(0, maxMs, true));
    const error = assertThrows(
      () => parseFrame({ type: FrameType.HOLD, id: 3, payload }),
      FrameError,
    );
    assert(
      error.message.includes(`maxMs ${maxMs} is outside 1..${LIMITS.maxHoldMs}`),
      error.message,
    );
    assertEquals(error.id, 3);
    assert(!error.fatal, "a bad HOLD fails the request, not the stream");
  }
  const top = parseFrame({
    type: FrameType.HOLD,
    id: 3,
    payload: payloadOf({ ...hold, maxMs: LIMITS.maxHoldMs }),
  });
  assertEquals(top, { type: FrameType.HOLD, id: 3, maxMs: LIMITS.maxHoldMs });
  for (const payload of [new Uint8Array(3), new Uint8Array(5)]) {
    assertThrows(() => parseFrame({ type: FrameType.HOLD, id: 3, payload }), FrameError);
  }
  const release = new Uint8Array(1);
  assertThrows(() => parseFrame({ type: FrameType.RELEASE, id: 4, payload: release }), FrameError);
});

Deno.test("parseFrame() refuses a HELD with an unknown state, a cap past the limit or a huge time", () => {
  const held: Frame = {
    type: FrameType.HELD,
    id: 9,
    hold: { state: HoldState.HOLDING, capMs: 100, freezeNs: 1, heldNs: 2 },
  };
  const cases: [string, (v: DataView) => void][] = [
    ["unknown hold state 4", (v) => v.setUint8(0, 4)],
    ["unknown hold state 255", (v) => v.setUint8(0, 255)],
    [`capMs ${LIMITS.maxHoldMs + 1} exceeds`, (v) => v.setUint32(1, LIMITS.maxHoldMs + 1, true)],
    ["is too large", (v) => v.setBigUint64(5, 1n << 60n, true)],
    ["is too large", (v) => v.setBigUint64(13, (1n << 64n) - 1n, true)],
  ];
  for (const [problem, edit] of cases) {
    const payload = payloadOf(held, edit);
    const error = assertThrows(
      () => parseFrame({ type: FrameType.HELD, id: 9, payload }),
      FrameError,
    );
    assert(error.message.includes(problem), `${problem}: ${error.message}`);
    assert(error.message.includes("HELD"), error.message);
  }
  const long = new Uint8Array(payloadOf(held).length + 1);
  assertThrows(() => parseFrame({ type: FrameType.HELD, id: 9, payload: long }), FrameError);
});

Deno.test("parseFrame() rejects a string that is not UTF-8 or is too long", () => {
  const payload = new Uint8Array([1, 0, 2, 0, 0xff, 0xfe]);
  assertThrows(() => parseFrame({ type: FrameType.ERROR, id: 1, payload }), FrameError);
  const long = new Uint8Array(4 + LIMITS.maxString + 1);
  new DataView(long.buffer).setUint16(2, LIMITS.maxString + 1, true);
  assertThrows(() => parseFrame({ type: FrameType.ERROR, id: 1, payload: long }), FrameError);
});

Deno.test("DataFrameBuilder packs records that dataRecords() reads back in order", () => {
  fc.assert(
    fc.property(
      fc.array(fc.tuple(u64, fc.uint8Array({ maxLength: 500 })), { maxLength: 50 }),
      (records) => {
        const builder = new DataFrameBuilder(4096);
        const frames: Uint8Array[] = [];
        for (const [addr, bytes] of records) {
          if (!builder.append(addr, bytes)) {
            frames.push(builder.take(3));
            assert(builder.append(addr, bytes), "a record fits an empty frame");
          }
        }
        if (builder.records) frames.push(builder.take(3));
        const out = decodeAll(concat(frames)).flatMap((f) => {
          assertEquals(f.type, FrameType.DATA);
          return f.type === FrameType.DATA ? [...dataRecords(f.payload)] : [];
        });
        assertEquals(out.map((r) => [r.addr, [...r.bytes]]), records.map(([a, b]) => [a, [...b]]));
      },
    ),
  );
});

Deno.test("DataFrameBuilder.appendFrom() frames the same records as append()", () => {
  fc.assert(
    fc.property(
      fc.array(fc.tuple(u64, fc.uint8Array({ maxLength: 300 })), { maxLength: 30 }),
      (records) => {
        const a = new DataFrameBuilder(8192);
        const b = new DataFrameBuilder(8192);
        for (const [addr, bytes] of records) {
          // The record as the ring holds it: address, length, padding, bytes, after some junk.
          const source = new Uint8Array(5 + 16 + bytes.length).fill(0xee);
          new DataView(source.buffer).setBigUint64(5, addr, true);
          source.set(bytes, 5 + 16);
          assertEquals(a.append(addr, bytes), b.appendFrom(source, 5, 5 + 16, bytes.length));
        }
        assertEquals(b.take(7), a.take(7));
      },
    ),
  );
});

Deno.test("DataFrameBuilder asks for a flush once a frame holds flushAt bytes", () => {
  const builder = new DataFrameBuilder(4096, 100);
  const record = new Uint8Array(40);
  // 52 bytes per record after the 9-byte header: the third starts past 100.
  assert(builder.append(1n, record) && builder.append(2n, record), "two records fit");
  assertEquals(builder.append(3n, record), false, "the frame is due");
  assertEquals(builder.records, 2);
  builder.take(1);
  assert(builder.append(3n, record), "an empty frame takes the record");
  assert(builder.append(4n, new Uint8Array(3000)), "one record larger than flushAt fits");
});

Deno.test("dataRecords() rejects a record that claims more bytes than the frame holds", () => {
  const payload = new Uint8Array(20);
  new DataView(payload.buffer).setUint32(8, 9, true);
  assertThrows(() => [...dataRecords(payload)], FrameError);
  assertThrows(() => [...dataRecords(new Uint8Array(5))], FrameError);
});

Deno.test("FrameDecoder takes a larger limit for the frame types given one, and only for them", () => {
  const big = encodeFrame({ type: FrameType.LOAD, id: 7, object: new Uint8Array(5000).fill(1) });
  const limits = new Map([[FrameType.LOAD, 9 + 5000]]);
  const decoder = new FrameDecoder({ maxFrame: 1024, maxFrameOf: limits });
  // The length alone says nothing yet: the type decides.
  decoder.push(big.subarray(0, 4));
  assertEquals(decoder.next(), undefined);
  decoder.push(big.subarray(4));
  const frame = parseFrame(decoder.next()!);
  assert(frame.type === FrameType.LOAD && frame.object.length === 5000, "the LOAD frame");
  // Over its type's limit, or of another type over maxFrame: refused once the type is known.
  const over = encodeFrame({ type: FrameType.LOAD, id: 8, object: new Uint8Array(5001) });
  const other = encodeFrame({ type: FrameType.DATA, id: 9, payload: new Uint8Array(2000) });
  for (const bytes of [over, other]) {
    const d = new FrameDecoder({ maxFrame: 1024, maxFrameOf: limits });
    d.push(bytes.subarray(0, 5));
    const error = assertThrows(() => d.next(), FrameError);
    assert(error.fatal && error.code === ErrorCode.TOO_LARGE, error.message);
  }
});

Deno.test("parseFrame() holds LOAD, LOADED and LOG to their caps and names the field", () => {
  const load = (size: number, object: Uint8Array) => {
    const payload = new Uint8Array(4 + object.length);
    new DataView(payload.buffer).setUint32(0, size, true);
    payload.set(object, 4);
    return parseFrame({ type: FrameType.LOAD, id: 3, payload });
  };
  for (const size of [0, LIMITS.maxObject + 1]) {
    const error = assertThrows(() => load(size, new Uint8Array(1)), FrameError);
    assertEquals([error.code, error.id], [ErrorCode.TOO_LARGE, 3]);
    assert(error.message.includes(`object of ${size} bytes is outside 1..`), error.message);
  }
  assertThrows(() => load(10, new Uint8Array(4)), FrameError, "more needed");
  assertThrows(() => load(2, new Uint8Array(4)), FrameError, "trailing bytes");
  const loaded = (tag: string, count = 1) =>
    encodeFrame({
      type: FrameType.LOADED,
      id: 4,
      loaded: {
        anchor: 1n,
        programs: Array.from(
          { length: count },
          () => ({ name: "p", section: "uprobe", type: "kprobe", tag, instructions: 2 }),
        ),
      },
    });
  assertThrows(() => decodeAll(loaded("not-a-tag")), FrameError, "is not 16 hex digits");
  assertThrows(() => loaded("0123456789abcdef", LIMITS.maxPrograms + 1), RangeError);
  const log = { type: FrameType.LOG, id: 5, payload: new Uint8Array(LIMITS.maxLoadLog + 1) };
  assertThrows(() => parseFrame(log), FrameError, "exceeds");
});
