/**
 * One connection of the hostile agent: it answers the IDS's requests as an agent would, and
 * tells its lie in the answers it applies to.
 *
 * @module
 */

import {
  type AgentInfo,
  type Channel,
  DataFrameBuilder,
  EMPTY_END_STATS,
  encodeFrame,
  ErrorCode,
  FEATURE_LA57,
  type Frame,
  FrameDecoder,
  FrameType,
  LIMITS,
  parseFrame,
  PROTOCOL_VERSION,
} from "../protocol/mod.ts";
import type { MemoryCache } from "../ids/memory/mod.ts";
import { type Images, readImage, space } from "./_hostile_images.ts";
import type { HostileAgent, Lie } from "./hostile_agent.ts";

/** One connection: answers requests, telling its lie where it applies. */
export class Liar {
  #told = false;
  #prefetches = 0;
  constructor(
    readonly agent: HostileAgent,
    readonly channel: Channel,
    readonly lie: Lie,
    readonly btf: Uint8Array,
    readonly hash: Uint8Array,
    readonly images: Images,
    readonly options: { dripMs: number; closeAfter: number },
  ) {}

  get #image(): MemoryCache {
    if (this.lie === "task-cycle") return this.images.cycle;
    if (this.lie === "non-canonical") return this.images.noncanonical;
    return this.images.honest;
  }

  async serve(): Promise<void> {
    const decoder = new FrameDecoder();
    for await (const chunk of this.channel.chunks()) {
      decoder.push(chunk);
      for (let raw = decoder.next(); raw; raw = decoder.next()) {
        await this.#answer(parseFrame(raw));
      }
    }
  }

  #send(frame: Frame | Uint8Array): Promise<void> {
    return this.channel.write(frame instanceof Uint8Array ? frame : encodeFrame(frame));
  }

  /** True once, for the first request the lie applies to. */
  #tell(lie: Lie): boolean {
    if (this.lie !== lie || this.#told) return false;
    this.#told = true;
    return true;
  }

  async #answer(frame: Frame): Promise<void> {
    switch (frame.type) {
      case FrameType.HELLO:
        return this.#hello(frame.id);
      case FrameType.GET_BTF:
        return this.#sendBtf(frame.id);
      case FrameType.READ:
        return this.#read(frame.id, frame.addr, frame.len);
      case FrameType.PREFETCH:
        return this.#prefetch(frame.id);
      case FrameType.LOAD: {
        // Whatever the object, it is "loaded": the walker is the lie's memory images.
        const loaded = {
          anchor: this.images.anchor,
          programs: [
            { name: "walk_plan", section: "uprobe", type: "kprobe", tag: "0badc0de0badc0de" },
          ].map((p) => ({ ...p, instructions: 1 })),
        };
        await this.#send({ type: FrameType.LOADED, id: frame.id, loaded });
        if (this.#tell("loaded-twice")) {
          await this.#send({ type: FrameType.LOADED, id: frame.id, loaded });
        }
        return this.#end(frame.id);
      }
      case FrameType.SYMBOLS: {
        // The region bases are where they are only to the guest that lies about its paging.
        const at = (n: string) => this.lie === "wrong-paging" ? this.images.bases.get(n) ?? 0n : 0n;
        await this.#send(
          "names" in frame
            ? { type: FrameType.SYMBOLS, id: frame.id, symbols: frame.names.map((n) => [n, at(n)]) }
            : { type: FrameType.SYMBOLS, id: frame.id, at: [] },
        );
        return this.#end(frame.id);
      }
      default:
        return this.#send({
          type: FrameType.ERROR,
          id: frame.id,
          code: ErrorCode.BAD_FRAME,
          message: "not a request",
        });
    }
  }

  async #hello(id: number): Promise<void> {
    const agent: AgentInfo = {
      kernelRelease: "6.18.0-hostile",
      btfHash: this.hash,
      btfSize: this.btf.length,
      bootId: "00000000-0000-4000-8000-000000000bad",
      anchor: this.images.anchor,
      agentPid: 100,
      programs: "hostile",
      features: this.lie === "wrong-paging" ? [FEATURE_LA57] : [],
    };
    if (this.#tell("huge-btf")) {
      agent.btfSize = LIMITS.maxBtf + 1;
      // encodeFrame checks nothing of the size: the lie goes out as it is.
    }
    if (this.lie === "endless-btf") {
      // A hash the IDS has never stored, so that it asks for the BTF.
      agent.btfHash = crypto.getRandomValues(new Uint8Array(32));
    }
    await this.#send({ type: FrameType.HELLO, id, version: PROTOCOL_VERSION, agent });
  }

  async #sendBtf(id: number): Promise<void> {
    const chunk = (offset: number) => ({
      type: FrameType.BTF,
      id,
      offset,
      total: this.btf.length,
      bytes: this.btf.subarray(offset, offset + LIMITS.dataFrame),
    } as const);
    if (this.#tell("endless-btf")) {
      while (!this.agent.isClosed) await this.#send(chunk(0));
      return;
    }
    for (let offset = 0; offset < this.btf.length; offset += LIMITS.dataFrame) {
      await this.#send(chunk(offset));
    }
    await this.#end(id);
  }

  async #read(id: number, addr: bigint, len: number): Promise<void> {
    const at = space.toKAddr(addr);
    if (at === undefined || len > LIMITS.maxRead) {
      await this.#send({ type: FrameType.ERROR, id, code: ErrorCode.FAULT, message: "bad read" });
      return;
    }
    const bytes = readImage(this.#image, at, len);
    const builder = new DataFrameBuilder();
    if (this.#tell("outside-read")) {
      builder.append(addr + BigInt(len), bytes);
    } else {
      builder.append(addr, bytes);
    }
    const answerId = this.#tell("wrong-id") ? id + 7 : id;
    await this.#send(builder.take(answerId));
    await this.#end(answerId);
  }

  async #prefetch(id: number): Promise<void> {
    const base = space.fromKAddr(0x0888_0000_0000);
    switch (this.lie) {
      case "endless-data": {
        const builder = new DataFrameBuilder();
        const record = new Uint8Array(64 << 10);
        let addr = base;
        while (builder.append(addr, record)) addr += BigInt(record.length);
        const frame = builder.take(id);
        while (!this.agent.isClosed) await this.#send(frame);
        return;
      }
      case "one-byte-records": {
        const builder = new DataFrameBuilder();
        const one = new Uint8Array(1);
        for (let addr = base; builder.append(addr, one); addr += 8n);
        const frame = builder.take(id);
        while (!this.agent.isClosed) await this.#send(frame);
        return;
      }
      case "outside-kernel": {
        const builder = new DataFrameBuilder();
        builder.append(0x0000_7fff_0000_0000n, new Uint8Array(64));
        await this.#send(builder.take(id));
        return this.#end(id);
      }
      case "wrong-type":
        return this.#send({
          type: FrameType.BTF,
          id,
          offset: 0,
          total: 16,
          bytes: new Uint8Array(16),
        });
      case "no-end": {
        const builder = new DataFrameBuilder();
        builder.append(base, new Uint8Array(64));
        return this.#send(builder.take(id));
      }
      case "slow-drip": {
        const builder = new DataFrameBuilder();
        builder.append(base, new Uint8Array(8));
        const frame = builder.take(id);
        while (await this.agent.sleep(this.options.dripMs)) await this.#send(frame);
        return;
      }
      case "byte-drip": {
        const builder = new DataFrameBuilder();
        builder.append(base, new Uint8Array(4096));
        const frame = builder.take(id);
        for (let i = 0; i < frame.length && await this.agent.sleep(50); i++) {
          await this.#send(frame.slice(i, i + 1));
        }
        return;
      }
      case "carried-run": {
        const builder = new DataFrameBuilder();
        builder.appendCarried(0, 1000);
        await this.#send(builder.take(id));
        return this.#end(id);
      }
      case "huge-frame": {
        const header = new Uint8Array(9);
        const view = new DataView(header.buffer);
        view.setUint32(0, 16 << 20, true);
        view.setUint8(4, FrameType.DATA);
        view.setUint32(5, id, true);
        return this.#send(header);
      }
      default:
        if (++this.#prefetches > this.options.closeAfter) {
          this.channel.close();
          return;
        }
        // Honest: no prefetched memory; the IDS reads what it needs, page by page.
        return this.#end(id);
    }
  }

  #end(id: number): Promise<void> {
    return this.#send({
      type: FrameType.END,
      id,
      stats: EMPTY_END_STATS,
    });
  }
}
