/**
 * Walk plans on the wire: the IDS's description of what the in-guest walker visits, which
 * pointers it follows and which byte ranges it copies. The byte layout is `struct ebpfmon_plan`
 * of `bpf/plan.h` (read its comment for what each edge kind means); {@linkcode encodePlan}
 * writes it and {@linkcode decodePlan} reads and checks it.
 *
 * @module
 */

export const PLAN_LIMITS = {
  roots: 16,
  nodes: 64,
  ranges: 8,
  edges: 8,
  depth: 64,
} as const;

export const EdgeKind = {
  PTR: 1,
  LIST: 2,
  HLIST: 3,
  HNULLS: 4,
  ARRAY: 5,
  BYTES: 6,
  SLOTS: 7,
} as const;
export type EdgeKind = typeof EdgeKind[keyof typeof EdgeKind];

export const ElemKind = { PTR: 0, HLIST: 1, HNULLS: 2 } as const;
export type ElemKind = typeof ElemKind[keyof typeof ElemKind];

export const CondKind = { NONE: 0, EQ: 1, IN_SET: 2, NE: 3, DIFF: 4 } as const;
export type CondKind = typeof CondKind[keyof typeof CondKind];

/** Byte sizes a count or a condition field may have. */
export type FieldSize = 1 | 2 | 4 | 8;

/**
 * Follow an edge only when a field of the current object passes this test. DIFF compares two
 * 8-byte fields: it holds when the field minus the one at offset `mask` is `value` (modulo 2^64),
 * e.g. a socket file's `f_inode` and its `private_data`, which point into one socket_alloc.
 */
export interface PlanCondition {
  kind: typeof CondKind.EQ | typeof CondKind.IN_SET | typeof CondKind.NE | typeof CondKind.DIFF;
  off: number;
  size: FieldSize;
  /** EQ, NE: the bits compared; IN_SET: the set; DIFF: the other field's offset. */
  mask: bigint;
  /** EQ, NE and DIFF only. */
  value?: bigint;
}

export interface PlanEdge {
  kind: EdgeKind;
  /** Index of the target node (BYTES: ignored). */
  target: number;
  off: number;
  /** The target object is at the entry's address minus this. */
  delta: number;
  /** ARRAY: what each element is. */
  elem?: ElemKind;
  /** ARRAY: the count field is a mask (count = value + 1). */
  countIsMask?: boolean;
  /** ARRAY of PTR elements: copy only the non-NULL elements, each on its own. */
  sparse?: boolean;
  /** BYTES: the length field counts bits (a bitmap): copy that many bits, rounded up. */
  bits?: boolean;
  /** ARRAY, BYTES: where the count (or length) is, and its size. */
  aux?: number;
  countSize?: FieldSize;
  /** ARRAY: bytes per element. */
  stride?: number;
  /** ARRAY: where in each element its pointer or chain head is (0..255). @default 0 */
  elemOffset?: number;
  /** SLOTS: a slot's value v is followed when (v & tagMask) == tagValue (both below 2^32). */
  tagMask?: number;
  tagValue?: number;
  /** Most entries (LIST, HLIST, HNULLS, ARRAY), slots (SLOTS) or bytes (BYTES) followed. */
  max: number;
  cond?: PlanCondition;
}

export interface PlanNode {
  /** Visit each address at most once per walk. */
  dedupe: boolean;
  /**
   * A deduped node that copies every range of this one and leads wherever it leads: an address
   * the walk already visited as that node is not visited as this one.
   */
  coveredBy?: number;
  /**
   * Visit an object of this node only when its own field passes this test (candidates of
   * several kinds reached by one edge: the guard keeps this node's).
   */
  guard?: PlanCondition;
  /** Byte ranges to copy, relative to the object. */
  ranges: { off: number; len: number }[];
  edges: PlanEdge[];
}

export interface Plan {
  roots: { addr: bigint; node: number }[];
  nodes: PlanNode[];
  /** Most hops from a root. */
  maxDepth: number;
}

const EDGE_SIZE = 48;
const GUARD_SIZE = 24;
const NODE_SIZE = 16 + PLAN_LIMITS.ranges * 8 + PLAN_LIMITS.edges * EDGE_SIZE + GUARD_SIZE;
/** Where in a node its guard is. */
const GUARD_AT = 16 + PLAN_LIMITS.ranges * 8 + PLAN_LIMITS.edges * EDGE_SIZE;
const ROOT_SIZE = 16;
/** Size of `struct ebpfmon_plan`. */
export const PLAN_SIZE = 16 + PLAN_LIMITS.roots * ROOT_SIZE + PLAN_LIMITS.nodes * NODE_SIZE;

/** A plan that breaks a limit or refers to what does not exist. */
export class PlanError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "PlanError";
  }
}

const FIELD_SIZES = new Set([1, 2, 4, 8]);
const U32 = 0xffff_ffff;

function check(ok: boolean, problem: string): void {
  if (!ok) throw new PlanError(`Invalid plan: ${problem}`);
}

function u32(value: number, what: string): void {
  check(Number.isInteger(value) && value >= 0 && value <= U32, `${what} ${value} is not a u32`);
}

function checkCondition(cond: PlanCondition, what: string): void {
  u32(cond.off, `${what} offset`);
  check(FIELD_SIZES.has(cond.size), `${what} size ${cond.size}`);
  check(
    cond.kind === CondKind.EQ || cond.kind === CondKind.IN_SET || cond.kind === CondKind.NE ||
      cond.kind === CondKind.DIFF,
    `${what} kind ${cond.kind}`,
  );
  if (cond.kind === CondKind.DIFF) {
    check(cond.size === 8, `${what} size ${cond.size}: a difference is of 8-byte fields`);
    check(cond.mask >= 0n && cond.mask <= BigInt(U32), `${what} other offset ${cond.mask}`);
  }
}

/** Checks every limit and reference of a plan. @throws {PlanError} naming the problem. */
export function validatePlan(plan: Plan): void {
  check(
    plan.roots.length >= 1 && plan.roots.length <= PLAN_LIMITS.roots,
    `${plan.roots.length} roots (1..${PLAN_LIMITS.roots})`,
  );
  check(
    plan.nodes.length >= 1 && plan.nodes.length <= PLAN_LIMITS.nodes,
    `${plan.nodes.length} nodes (1..${PLAN_LIMITS.nodes})`,
  );
  check(
    Number.isInteger(plan.maxDepth) && plan.maxDepth >= 0 && plan.maxDepth <= PLAN_LIMITS.depth,
    `max depth ${plan.maxDepth} (0..${PLAN_LIMITS.depth})`,
  );
  plan.roots.forEach((root, i) => {
    check(root.node >= 0 && root.node < plan.nodes.length, `root ${i} names node ${root.node}`);
    check(root.addr >= 0n && root.addr < 1n << 64n, `root ${i} address is not a u64`);
  });
  plan.nodes.forEach((node, n) => {
    check(
      node.ranges.length <= PLAN_LIMITS.ranges,
      `node ${n} has ${node.ranges.length} ranges (max ${PLAN_LIMITS.ranges})`,
    );
    check(
      node.edges.length <= PLAN_LIMITS.edges,
      `node ${n} has ${node.edges.length} edges (max ${PLAN_LIMITS.edges})`,
    );
    if (node.guard) checkCondition(node.guard, `node ${n} guard`);
    if (node.coveredBy !== undefined) {
      const by = plan.nodes[node.coveredBy];
      check(
        Number.isInteger(node.coveredBy) && node.coveredBy !== n && by?.dedupe === true,
        `node ${n} is covered by node ${node.coveredBy}, which is not another deduped node`,
      );
    }
    node.ranges.forEach((r, i) => {
      u32(r.off, `node ${n} range ${i} offset`);
      u32(r.len, `node ${n} range ${i} length`);
    });
    node.edges.forEach((e, i) => {
      const where = `node ${n} edge ${i}`;
      check(Object.values(EdgeKind).includes(e.kind), `${where} has unknown kind ${e.kind}`);
      check(
        e.kind === EdgeKind.BYTES || (e.target >= 0 && e.target < plan.nodes.length),
        `${where} targets node ${e.target}`,
      );
      u32(e.off, `${where} offset`);
      u32(e.max, `${where} max`);
      check(
        Number.isInteger(e.delta) && Math.abs(e.delta) <= 0x7fff_ffff,
        `${where} delta ${e.delta} is not an s32`,
      );
      if (e.kind === EdgeKind.ARRAY || e.kind === EdgeKind.BYTES) {
        u32(e.aux ?? -1, `${where} count offset`);
        check(FIELD_SIZES.has(e.countSize ?? 0), `${where} count size ${e.countSize}`);
      }
      if (e.kind === EdgeKind.ARRAY) {
        check(!e.sparse || e.elem === ElemKind.PTR, `${where} is sparse but not of pointers`);
        u32(e.stride ?? -1, `${where} stride`);
        check((e.stride ?? 0) >= 8, `${where} stride ${e.stride} is below 8`);
        check(
          Object.values(ElemKind).includes(e.elem ?? -1 as ElemKind),
          `${where} has unknown element kind ${e.elem}`,
        );
      }
      if (e.kind === EdgeKind.SLOTS) {
        u32(e.tagMask ?? -1, `${where} tag mask`);
        u32(e.tagValue ?? -1, `${where} tag value`);
      }
      if (e.cond) checkCondition(e.cond, `${where} condition`);
    });
  });
}

/** Writes a plan as `struct ebpfmon_plan`. @throws {PlanError} when it is not valid. */
export function encodePlan(plan: Plan): Uint8Array {
  validatePlan(plan);
  const bytes = new Uint8Array(PLAN_SIZE);
  const v = new DataView(bytes.buffer);
  v.setUint32(0, plan.roots.length, true);
  v.setUint32(4, plan.nodes.length, true);
  v.setUint32(8, plan.maxDepth, true);
  plan.roots.forEach((root, i) => {
    v.setBigUint64(16 + i * ROOT_SIZE, root.addr, true);
    v.setUint32(16 + i * ROOT_SIZE + 8, root.node, true);
  });
  plan.nodes.forEach((node, n) => {
    const at = 16 + PLAN_LIMITS.roots * ROOT_SIZE + n * NODE_SIZE;
    v.setUint32(at, node.dedupe ? 1 : 0, true);
    v.setUint32(at + 4, node.ranges.length, true);
    v.setUint32(at + 8, node.edges.length, true);
    v.setUint32(at + 12, node.coveredBy === undefined ? 0 : node.coveredBy + 1, true);
    if (node.guard) {
      const g = at + GUARD_AT;
      v.setUint8(g, node.guard.kind);
      v.setUint8(g + 1, node.guard.size);
      v.setUint32(g + 4, node.guard.off, true);
      v.setBigUint64(g + 8, BigInt.asUintN(64, node.guard.mask), true);
      v.setBigUint64(g + 16, BigInt.asUintN(64, node.guard.value ?? 0n), true);
    }
    node.ranges.forEach((r, i) => {
      v.setUint32(at + 16 + i * 8, r.off, true);
      v.setUint32(at + 20 + i * 8, r.len, true);
    });
    node.edges.forEach((e, i) => {
      const ed = at + 16 + PLAN_LIMITS.ranges * 8 + i * EDGE_SIZE;
      v.setUint8(ed, e.kind);
      v.setUint8(ed + 1, e.kind === EdgeKind.BYTES ? 0 : e.target);
      v.setUint8(ed + 2, e.elem ?? 0);
      v.setUint8(ed + 3, (e.countIsMask ? 1 : 0) | (e.sparse ? 2 : 0) | (e.bits ? 4 : 0));
      v.setUint8(ed + 4, e.countSize ?? 0);
      v.setUint8(ed + 5, e.cond?.kind ?? CondKind.NONE);
      v.setUint8(ed + 6, e.cond?.size ?? 0);
      v.setUint8(ed + 7, e.elemOffset ?? 0);
      v.setUint32(ed + 8, e.off, true);
      v.setInt32(ed + 12, e.delta, true);
      const slots = e.kind === EdgeKind.SLOTS;
      v.setUint32(ed + 16, (slots ? e.tagMask : e.aux) ?? 0, true);
      v.setUint32(ed + 20, (slots ? e.tagValue : e.stride) ?? 0, true);
      v.setUint32(ed + 24, e.max, true);
      v.setUint32(ed + 28, e.cond?.off ?? 0, true);
      v.setBigUint64(ed + 32, BigInt.asUintN(64, e.cond?.mask ?? 0n), true);
      v.setBigUint64(ed + 40, BigInt.asUintN(64, e.cond?.value ?? 0n), true);
    });
  });
  return bytes;
}

/** Reads and checks a plan. @throws {PlanError} when the bytes are not a valid plan. */
export function decodePlan(bytes: Uint8Array): Plan {
  check(bytes.length === PLAN_SIZE, `${bytes.length} bytes, expected ${PLAN_SIZE}`);
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const nroots = v.getUint32(0, true);
  const nnodes = v.getUint32(4, true);
  check(
    nroots <= PLAN_LIMITS.roots && nnodes <= PLAN_LIMITS.nodes,
    `${nroots} roots and ${nnodes} nodes`,
  );
  const plan: Plan = { roots: [], nodes: [], maxDepth: v.getUint32(8, true) };
  for (let i = 0; i < nroots; i++) {
    plan.roots.push({
      addr: v.getBigUint64(16 + i * ROOT_SIZE, true),
      node: v.getUint32(24 + i * ROOT_SIZE, true),
    });
  }
  for (let n = 0; n < nnodes; n++) {
    const at = 16 + PLAN_LIMITS.roots * ROOT_SIZE + n * NODE_SIZE;
    const nranges = v.getUint32(at + 4, true);
    const nedges = v.getUint32(at + 8, true);
    check(
      nranges <= PLAN_LIMITS.ranges && nedges <= PLAN_LIMITS.edges,
      `node ${n} has ${nranges} ranges and ${nedges} edges`,
    );
    const node: PlanNode = { dedupe: (v.getUint32(at, true) & 1) === 1, ranges: [], edges: [] };
    const coveredBy = v.getUint32(at + 12, true);
    if (coveredBy !== 0) node.coveredBy = coveredBy - 1;
    const guard = v.getUint8(at + GUARD_AT);
    if (guard !== CondKind.NONE) {
      node.guard = {
        kind: guard as PlanCondition["kind"],
        off: v.getUint32(at + GUARD_AT + 4, true),
        size: v.getUint8(at + GUARD_AT + 1) as FieldSize,
        mask: v.getBigUint64(at + GUARD_AT + 8, true),
        ...(guard !== CondKind.IN_SET ? { value: v.getBigUint64(at + GUARD_AT + 16, true) } : {}),
      };
    }
    for (let i = 0; i < nranges; i++) {
      node.ranges.push({
        off: v.getUint32(at + 16 + i * 8, true),
        len: v.getUint32(at + 20 + i * 8, true),
      });
    }
    for (let i = 0; i < nedges; i++) {
      const ed = at + 16 + PLAN_LIMITS.ranges * 8 + i * EDGE_SIZE;
      const kind = v.getUint8(ed) as EdgeKind;
      const cond = v.getUint8(ed + 5);
      const edge: PlanEdge = {
        kind,
        target: v.getUint8(ed + 1),
        off: v.getUint32(ed + 8, true),
        delta: v.getInt32(ed + 12, true),
        max: v.getUint32(ed + 24, true),
      };
      if (kind === EdgeKind.ARRAY || kind === EdgeKind.BYTES) {
        edge.aux = v.getUint32(ed + 16, true);
        edge.countSize = v.getUint8(ed + 4) as FieldSize;
      }
      if (kind === EdgeKind.BYTES) edge.bits = (v.getUint8(ed + 3) & 4) === 4;
      if (kind === EdgeKind.ARRAY) {
        edge.elem = v.getUint8(ed + 2) as ElemKind;
        edge.countIsMask = (v.getUint8(ed + 3) & 1) === 1;
        edge.sparse = (v.getUint8(ed + 3) & 2) === 2;
        edge.stride = v.getUint32(ed + 20, true);
        edge.elemOffset = v.getUint8(ed + 7);
      }
      if (kind === EdgeKind.SLOTS) {
        edge.tagMask = v.getUint32(ed + 16, true);
        edge.tagValue = v.getUint32(ed + 20, true);
      }
      if (cond !== CondKind.NONE) {
        edge.cond = {
          kind: cond as PlanCondition["kind"],
          off: v.getUint32(ed + 28, true),
          size: v.getUint8(ed + 6) as FieldSize,
          mask: v.getBigUint64(ed + 32, true),
          ...(cond !== CondKind.IN_SET ? { value: v.getBigUint64(ed + 40, true) } : {}),
        };
      }
      node.edges.push(edge);
    }
    plan.nodes.push(node);
  }
  validatePlan(plan);
  return plan;
}
