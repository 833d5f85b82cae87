/**
 * The guest kernel's BTF as the agent sends it (GET_BTF): chunks in order, reassembled into the
 * size HELLO announced, and the whole checked against HELLO's hash before anyone parses it.
 *
 * @module
 */

import { type AgentInfo, FrameType } from "../../protocol/mod.ts";
import type { Connection } from "./_connection.ts";
import { misbehaving } from "./errors.ts";

/** {@linkcode AgentClient.btf} over `connection`, of the agent whose HELLO was `info`. */
export async function downloadBtf(
  connection: Connection,
  info: AgentInfo,
  onProgress?: (received: number, total: number) => void,
): Promise<Uint8Array> {
  const size = info.btfSize;
  if (size === 0) throw misbehaving("btfSize", "Cannot use BTF: HELLO announces 0 bytes", 0);
  // HELLO's size was checked against LIMITS.maxBtf when it was decoded.
  const out = new Uint8Array(size);
  let received = 0;
  await connection.stream({ type: FrameType.GET_BTF, id: 0 }, undefined, (frame) => {
    if (frame.type !== FrameType.BTF) return false;
    if (frame.total !== size) {
      throw misbehaving(
        "btfSize",
        `Cannot use BTF: a chunk says ${frame.total} bytes, HELLO said ${size}`,
        frame.total,
        size,
      );
    }
    if (frame.offset !== received || frame.bytes.length === 0) {
      throw misbehaving(
        "btfChunk",
        `Cannot use BTF: a chunk of ${frame.bytes.length} bytes at ${frame.offset}, expected the bytes at ${received}`,
        frame.offset,
        received,
      );
    }
    out.set(frame.bytes, frame.offset);
    received += frame.bytes.length;
    onProgress?.(received, frame.total);
    return true;
  });
  if (received !== size) {
    throw misbehaving(
      "btfSize",
      `Cannot use BTF: received ${received} of ${size} bytes`,
      received,
      size,
    );
  }
  const hash = new Uint8Array(await crypto.subtle.digest("SHA-256", out));
  if (!hash.every((b, i) => b === info.btfHash[i])) {
    throw misbehaving("btfHash", "Cannot use BTF: its SHA-256 differs from the hash in HELLO");
  }
  return out;
}
