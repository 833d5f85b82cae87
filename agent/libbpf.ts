/**
 * The libbpf FFI layer: the only file of ebpfmon that touches raw pointers.
 *
 * It binds `libbpf.so.1` (libbpf >= 1.1) and a few libc functions with `Deno.dlopen`, and turns
 * NULL and negative-errno returns into {@linkcode LibbpfError}s carrying libbpf's own messages
 * and, for a failed load, the verifier log. Kernel resources are owned by objects with an
 * idempotent `close()` and `[Symbol.dispose]`; nothing is left to the garbage collector.
 *
 * Lifecycle, as in libbpf: {@linkcode BpfObject.open} (pure: parses the ELF) -> set read-only
 * globals and map sizes -> {@linkcode BpfObject.load} (the verifier runs) -> attach.
 *
 * One file past 400 lines on purpose: every raw pointer (the object, its programs and links,
 * the ring buffer's mappings) stays here, so that auditing pointer use means reading one file.
 *
 * @module
 */

const LIBBPF_PATHS = ["libbpf.so.1", "/usr/lib/x86_64-linux-gnu/libbpf.so.1"];
const LIBC = "libc.so.6";

const libbpfSymbols = {
  bpf_object__open_mem: { parameters: ["buffer", "usize", "buffer"], result: "pointer" },
  bpf_object__load: { parameters: ["pointer"], result: "i32" },
  bpf_object__close: { parameters: ["pointer"], result: "void" },
  bpf_object__find_map_by_name: { parameters: ["pointer", "buffer"], result: "pointer" },
  bpf_object__find_program_by_name: { parameters: ["pointer", "buffer"], result: "pointer" },
  bpf_map__set_max_entries: { parameters: ["pointer", "u32"], result: "i32" },
  bpf_map__set_initial_value: { parameters: ["pointer", "buffer", "usize"], result: "i32" },
  bpf_map__initial_value: { parameters: ["pointer", "buffer"], result: "pointer" },
  bpf_map__fd: { parameters: ["pointer"], result: "i32" },
  bpf_program__attach_uprobe_opts: {
    parameters: ["pointer", "i32", "buffer", "usize", "buffer"],
    result: "pointer",
  },
  bpf_link__destroy: { parameters: ["pointer"], result: "i32" },
  // The same two, run on a thread of Deno's pool: detaching uprobes and freeing an object's
  // maps take the kernel about 100 ms a link, which must not stall the agent's other
  // connections. libbpf's print callback is unset meanwhile (it may only run on this thread).
  bpf_link__destroy_async: {
    name: "bpf_link__destroy",
    parameters: ["pointer"],
    result: "i32",
    nonblocking: true,
  },
  bpf_object__close_async: {
    name: "bpf_object__close",
    parameters: ["pointer"],
    result: "void",
    nonblocking: true,
  },
  bpf_object__next_program: { parameters: ["pointer", "pointer"], result: "pointer" },
  bpf_object__next_map: { parameters: ["pointer", "pointer"], result: "pointer" },
  bpf_program__name: { parameters: ["pointer"], result: "pointer" },
  bpf_program__section_name: { parameters: ["pointer"], result: "pointer" },
  bpf_program__type: { parameters: ["pointer"], result: "i32" },
  bpf_program__fd: { parameters: ["pointer"], result: "i32" },
  bpf_program__insn_cnt: { parameters: ["pointer"], result: "usize" },
  bpf_map__set_pin_path: { parameters: ["pointer", "pointer"], result: "i32" },
  libbpf_bpf_prog_type_str: { parameters: ["i32"], result: "pointer" },
  libbpf_strerror: { parameters: ["i32", "buffer", "usize"], result: "i32" },
  libbpf_set_print: { parameters: ["function"], result: "pointer" },
} as const;

const libcSymbols = {
  getppid: { parameters: [], result: "i32" },
  gettid: { parameters: [], result: "i32" },
  __errno_location: { parameters: [], result: "pointer" },
  mmap: { parameters: ["pointer", "usize", "i32", "i32", "i32", "i64"], result: "pointer" },
  munmap: { parameters: ["pointer", "usize"], result: "i32" },
  vsnprintf: { parameters: ["buffer", "usize", "pointer", "pointer"], result: "i32" },
  sysconf: { parameters: ["i32"], result: "i64" },
} as const;

const PROT_READ = 1;
const PROT_WRITE = 2;
const MAP_SHARED = 1;
const SC_PAGESIZE = 30;
const MAP_FAILED = 0xffff_ffff_ffff_ffffn;

/** A libbpf or kernel call failed. `errno` is positive (e.g. 1 for EPERM). */
export class LibbpfError extends Error {
  /** The errno the call reported. */
  readonly errno: number;
  /** libbpf's own diagnostics printed during the call, and the verifier log for a load. */
  readonly log: string;
  constructor(message: string, errno: number, log = "", options?: ErrorOptions) {
    super(log ? `${message}\n${log}` : message, options);
    this.name = "LibbpfError";
    this.errno = errno;
    this.log = log;
  }
}

type Libs = {
  bpf: Deno.DynamicLibrary<typeof libbpfSymbols>["symbols"];
  c: Deno.DynamicLibrary<typeof libcSymbols>["symbols"];
  pageSize: number;
  /** libbpf's print callback, unset while a call runs off this thread. */
  print: Deno.PointerValue;
};

/** libbpf calls running on other threads now. */
let offThreadCalls = 0;

/**
 * Runs `call` (a libbpf call on another thread) with libbpf's print callback unset until every
 * such call has returned.
 */
async function offThread<T>(l: Libs, call: () => Promise<T>): Promise<T> {
  if (offThreadCalls++ === 0) l.bpf.libbpf_set_print(null);
  try {
    return await call();
  } finally {
    if (--offThreadCalls === 0) l.bpf.libbpf_set_print(l.print);
  }
}

let libs: Libs | undefined;
/** libbpf's messages printed since the last call to {@linkcode takeLog}. */
let printed: string[] = [];
const printBuffer = new Uint8Array(4096);

function open(): Libs {
  if (libs) return libs;
  let bpf: Deno.DynamicLibrary<typeof libbpfSymbols> | undefined;
  let lastError: unknown;
  for (const path of LIBBPF_PATHS) {
    try {
      bpf = Deno.dlopen(path, libbpfSymbols);
      break;
    } catch (error) {
      lastError = error;
    }
  }
  if (!bpf) {
    throw new LibbpfError(
      `Cannot open "libbpf.so.1": ${(lastError as Error).message} (install Debian's libbpf1)`,
      2,
    );
  }
  const c = Deno.dlopen(LIBC, libcSymbols).symbols;
  // libbpf's print callback receives (level, format, va_list); on x86-64 a va_list is passed as a
  // pointer, which vsnprintf takes as is. The callback runs on this thread, inside libbpf calls.
  const print = new Deno.UnsafeCallback(
    { parameters: ["i32", "pointer", "pointer"], result: "i32" } as const,
    (_level, format, args) => {
      const n = c.vsnprintf(printBuffer, BigInt(printBuffer.length), format, args);
      const end = Math.min(Math.max(n, 0), printBuffer.length - 1);
      printed.push(new TextDecoder().decode(printBuffer.subarray(0, end)).trimEnd());
      if (printed.length > 200) printed.shift();
      return 0;
    },
  );
  bpf.symbols.libbpf_set_print(print.pointer);
  libs = { bpf: bpf.symbols, c, pageSize: Number(c.sysconf(SC_PAGESIZE)), print: print.pointer };
  return libs;
}

function takeLog(): string {
  const log = printed.join("\n");
  printed = [];
  return log;
}

function cstr(s: string): Uint8Array<ArrayBuffer> {
  return new TextEncoder().encode(s + "\0");
}

function errno(l: Libs): number {
  const p = l.c.__errno_location();
  return p ? new Deno.UnsafePointerView(p).getInt32() : 0;
}

function strerror(l: Libs, err: number): string {
  const buf = new Uint8Array(256);
  l.bpf.libbpf_strerror(err, buf, BigInt(buf.length));
  const end = buf.indexOf(0);
  return new TextDecoder().decode(buf.subarray(0, end < 0 ? buf.length : end));
}

function fail(l: Libs, action: string, err: number, extraLog = ""): never {
  const code = Math.abs(err);
  const log = [takeLog(), extraLog].filter((s) => s).join("\n");
  throw new LibbpfError(`${action}: ${strerror(l, -code)} (errno ${code})`, code, log);
}

/** A NUL-terminated string libbpf owns, copied; "" for NULL. */
function cstring(p: Deno.PointerValue): string {
  return p ? Deno.UnsafePointerView.getCString(p) : "";
}

function isNull(p: Deno.PointerValue): p is null {
  return p === null;
}

/** The page size of this machine, in bytes. */
export function pageSize(): number {
  return open().pageSize;
}

/** The calling thread's kernel thread id. */
export function currentThreadId(): number {
  return open().c.gettid();
}

/**
 * Calls libc's `getppid`, the agent's trigger function: the uprobes attached to it run their
 * programs synchronously, in this thread, before the call returns.
 */
export function fireTrigger(): void {
  open().c.getppid();
}

/** Where the trigger function lives, for {@linkcode BpfObject.attachUprobe}. */
export const TRIGGER = { binary: LIBC, func: "getppid" } as const;

/** One program of an opened object, as libbpf sees it. */
export interface ProgramEntry {
  name: string;
  /** Its ELF section, from which libbpf took its type. */
  section: string;
  /** The kernel program type (enum bpf_prog_type). */
  type: number;
  /** The type's name, as libbpf spells it ("kprobe"). */
  typeName: string;
}

/** One program of a loaded object, as the kernel loaded it. */
export interface LoadedProgramEntry extends ProgramEntry {
  /** The kernel's tag of the program (16 hex digits), from its fd's fdinfo. */
  tag: string;
  /** Instructions loaded (after libbpf's relocations). */
  instructions: number;
  /**
   * Instructions the verifier processed to accept it (fdinfo's `verified_insns`, Linux 5.16+;
   * undefined before): its work at load, which the kernel caps at a million.
   */
  verifiedInstructions?: number;
}

/** Options of {@linkcode BpfObject.attachUprobe}. */
export interface UprobeOptions {
  /** Only this process fires the probe (a perf event per process). */
  pid: number;
  /** Library or executable holding the function, e.g. `libc.so.6`. */
  binary: string;
  /** Symbol name of the function. */
  func: string;
  /** Attach at the function's return instead of its entry. @default false */
  retprobe?: boolean;
}

/** A program's attachment. Closing it detaches the program. */
export class BpfLink implements Disposable {
  #ptr: Deno.PointerObject | null;
  #onClose: (link: BpfLink) => void;
  constructor(ptr: Deno.PointerObject, onClose: (link: BpfLink) => void) {
    this.#ptr = ptr;
    this.#onClose = onClose;
  }
  /** Detaches the program. Idempotent. */
  close(): void {
    if (!this.#ptr) return;
    open().bpf.bpf_link__destroy(this.#ptr);
    this.#ptr = null;
    this.#onClose(this);
  }

  /** {@linkcode close}, with the kernel's work on another thread. */
  async closeAsync(): Promise<void> {
    const ptr = this.#ptr;
    if (!ptr) return;
    this.#ptr = null;
    this.#onClose(this);
    const l = open();
    await offThread(l, () => l.bpf.bpf_link__destroy_async(ptr));
  }
  [Symbol.dispose](): void {
    this.close();
  }
}

/**
 * A BPF object (one `.bpf.o`): its maps and programs. Closing it closes its links and unloads
 * its programs and maps. Views returned by {@linkcode BpfObject.globals} are invalid after close.
 */
export class BpfObject implements Disposable {
  #ptr: Deno.PointerObject | null;
  #name: string;
  #links = new Set<BpfLink>();
  #rings = new Set<RingReader>();
  #mappings: [Deno.PointerObject, number][] = [];
  #loaded = false;
  // Kept referenced: libbpf holds pointers into these until the object is closed.
  #keep: Uint8Array[];
  #logBuffer: Uint8Array<ArrayBuffer>;

  private constructor(
    ptr: Deno.PointerObject,
    name: string,
    keep: Uint8Array[],
    logBuffer: Uint8Array<ArrayBuffer>,
  ) {
    this.#ptr = ptr;
    this.#name = name;
    this.#keep = keep;
    this.#logBuffer = logBuffer;
  }

  /**
   * Parses an ELF object from memory (no kernel access). The bytes are copied by libbpf.
   * @throws {LibbpfError} when the ELF is not a valid BPF object.
   */
  static open(elf: Uint8Array, name: string): BpfObject {
    const l = open();
    const nameBuf = cstr(name);
    const logBuffer = new Uint8Array(1 << 20);
    // struct bpf_object_open_opts (libbpf 1.1): sz, object_name, relaxed_maps, pin_root_path,
    // a stub u32, kconfig, btf_custom_path, kernel_log_buf, kernel_log_size, kernel_log_level.
    const opts = new BigUint64Array(10);
    opts[0] = 80n;
    opts[1] = BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(nameBuf)));
    opts[7] = BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(logBuffer)));
    opts[8] = BigInt(logBuffer.length);
    opts[9] = 0n; // log level 0: libbpf retries a failed load with level 1 into our buffer
    const elfCopy = new Uint8Array(elf);
    takeLog();
    const ptr = l.bpf.bpf_object__open_mem(
      elfCopy,
      BigInt(elfCopy.length),
      new Uint8Array(opts.buffer),
    );
    if (isNull(ptr)) fail(l, `Cannot open BPF object "${name}"`, errno(l));
    const object = new BpfObject(ptr, name, [nameBuf, elfCopy], logBuffer);
    // An object's maps are its own: a map declared pinned would reuse (and could change) a map
    // another program pinned in bpffs, or leave one of its own there.
    for (let map = l.bpf.bpf_object__next_map(ptr, null); map;) {
      l.bpf.bpf_map__set_pin_path(map, null);
      map = l.bpf.bpf_object__next_map(ptr, map);
    }
    return object;
  }

  /** The object's programs, as libbpf found them in its ELF. */
  programs(): ProgramEntry[] {
    const l = open();
    const ptr = this.#live();
    const out: ProgramEntry[] = [];
    for (let p = l.bpf.bpf_object__next_program(ptr, null); p;) {
      const type = l.bpf.bpf_program__type(p);
      out.push({
        name: cstring(l.bpf.bpf_program__name(p)),
        section: cstring(l.bpf.bpf_program__section_name(p)),
        type,
        typeName: cstring(l.bpf.libbpf_bpf_prog_type_str(type)) || `type ${type}`,
      });
      p = l.bpf.bpf_object__next_program(ptr, p);
    }
    return out;
  }

  /** The programs of the loaded object, with the kernel's tag and the instructions loaded. */
  loadedPrograms(): LoadedProgramEntry[] {
    const l = open();
    if (!this.#loaded) throw new TypeError(`BPF object "${this.#name}" is not loaded`);
    return this.programs().map((entry) => {
      const prog = l.bpf.bpf_object__find_program_by_name(this.#live(), cstr(entry.name))!;
      const fd = l.bpf.bpf_program__fd(prog);
      if (fd < 0) fail(l, `Cannot get the fd of program "${entry.name}"`, fd);
      const info = Deno.readTextFileSync(`/proc/self/fdinfo/${fd}`);
      const tag = /^prog_tag:\s*([0-9a-f]{16})$/m.exec(info)?.[1];
      if (!tag) throw new LibbpfError(`Cannot read the tag of program "${entry.name}"`, 22);
      const verified = /^verified_insns:\s*(\d+)$/m.exec(info)?.[1];
      return {
        ...entry,
        tag,
        instructions: Number(l.bpf.bpf_program__insn_cnt(prog)),
        ...(verified === undefined ? {} : { verifiedInstructions: Number(verified) }),
      };
    });
  }

  get name(): string {
    return this.#name;
  }

  #live(): Deno.PointerObject {
    if (!this.#ptr) throw new TypeError(`BPF object "${this.#name}" is closed`);
    return this.#ptr;
  }

  #map(name: string): Deno.PointerObject {
    const map = open().bpf.bpf_object__find_map_by_name(this.#live(), cstr(name));
    if (isNull(map)) throw new TypeError(`BPF object "${this.#name}" has no map "${name}"`);
    return map;
  }

  /** Sets a map's size; only before {@linkcode load}. */
  setMaxEntries(map: string, entries: number): void {
    const l = open();
    const rc = l.bpf.bpf_map__set_max_entries(this.#map(map), entries);
    if (rc < 0) fail(l, `Cannot resize map "${map}" of "${this.#name}"`, rc);
  }

  /**
   * Sets the initial bytes of a global-data section (`.rodata` for read-only globals); only
   * before {@linkcode load}. The length must equal the section's size.
   */
  setGlobals(section: string, bytes: Uint8Array): void {
    const l = open();
    const copy = new Uint8Array(bytes);
    const rc = l.bpf.bpf_map__set_initial_value(this.#map(section), copy, BigInt(copy.length));
    if (rc < 0) fail(l, `Cannot set "${section}" of "${this.#name}"`, rc);
  }

  /**
   * Loads the object into the kernel; the verifier checks every program.
   * @throws {LibbpfError} with the verifier log when a program is rejected.
   */
  load(): void {
    const l = open();
    takeLog();
    this.#logBuffer.fill(0, 0, 16);
    const rc = l.bpf.bpf_object__load(this.#live());
    if (rc < 0) {
      const end = this.#logBuffer.indexOf(0);
      const verifier = new TextDecoder().decode(
        this.#logBuffer.subarray(0, end < 0 ? undefined : end),
      );
      fail(l, `Cannot load "${this.#name}"`, rc, verifier.trimEnd());
    }
    this.#loaded = true;
  }

  /**
   * A writable view of a global-data section after {@linkcode load}: the section's map is
   * mmapped shared, so writes here are seen by the next program run and the programs' writes are
   * seen here. Valid until the object is closed.
   */
  globals(section: string): Uint8Array {
    const l = open();
    if (!this.#loaded) throw new TypeError(`BPF object "${this.#name}" is not loaded`);
    const map = this.#map(section);
    const size = new BigUint64Array(1);
    l.bpf.bpf_map__initial_value(map, new Uint8Array(size.buffer));
    const fd = l.bpf.bpf_map__fd(map);
    if (fd < 0) fail(l, `Cannot get the fd of map "${section}"`, fd);
    const length = Math.ceil(Number(size[0]) / l.pageSize) * l.pageSize;
    const p = mmap(l, fd, length, PROT_READ | PROT_WRITE, 0, `section "${section}"`);
    this.#mappings.push([p, length]);
    return new Uint8Array(Deno.UnsafePointerView.getArrayBuffer(p, Number(size[0])));
  }

  /**
   * Attaches a program as a uprobe on a function's entry, for one process only.
   * @throws {LibbpfError} when the kernel refuses (no uprobes, unknown symbol).
   */
  attachUprobe(program: string, options: UprobeOptions): BpfLink {
    const l = open();
    if (!this.#loaded) throw new TypeError(`BPF object "${this.#name}" is not loaded`);
    const prog = l.bpf.bpf_object__find_program_by_name(this.#live(), cstr(program));
    if (isNull(prog)) {
      throw new TypeError(`BPF object "${this.#name}" has no program "${program}"`);
    }
    const func = cstr(options.func);
    // struct bpf_uprobe_opts: sz, ref_ctr_offset, bpf_cookie, retprobe, func_name.
    const opts = new BigUint64Array(5);
    opts[0] = 40n;
    opts[3] = options.retprobe ? 1n : 0n;
    opts[4] = BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(func)));
    takeLog();
    const link = l.bpf.bpf_program__attach_uprobe_opts(
      prog,
      options.pid,
      cstr(options.binary),
      0n,
      new Uint8Array(opts.buffer),
    );
    if (isNull(link)) {
      fail(l, `Cannot attach "${program}" to ${options.binary}:${options.func}`, errno(l));
    }
    const handle = new BpfLink(link, (h) => this.#links.delete(h));
    this.#links.add(handle);
    return handle;
  }

  /** Maps a ring buffer map of this loaded object for reading. Closed with the object. */
  ring(map: string): RingReader {
    const l = open();
    if (!this.#loaded) throw new TypeError(`BPF object "${this.#name}" is not loaded`);
    const m = this.#map(map);
    const fd = l.bpf.bpf_map__fd(m);
    if (fd < 0) fail(l, `Cannot get the fd of map "${map}"`, fd);
    const ring = new RingReader(l, fd, (r) => this.#rings.delete(r));
    this.#rings.add(ring);
    return ring;
  }

  /** Detaches every link, unmaps rings, unloads programs and maps. Idempotent. */
  close(): void {
    if (!this.#ptr) return;
    for (const link of [...this.#links]) link.close();
    for (const ring of [...this.#rings]) ring.close();
    for (const [p, length] of this.#mappings) open().c.munmap(p, BigInt(length));
    this.#mappings = [];
    open().bpf.bpf_object__close(this.#ptr);
    this.#ptr = null;
    this.#keep = [];
  }

  /**
   * {@linkcode close}, with the kernel's work (detaching, freeing maps and programs) on another
   * thread: what an agent serving other connections does. No call may use the object meanwhile.
   */
  async closeAsync(): Promise<void> {
    const ptr = this.#ptr;
    if (!ptr) return;
    this.#ptr = null;
    for (const ring of [...this.#rings]) ring.close();
    for (const [p, length] of this.#mappings) open().c.munmap(p, BigInt(length));
    this.#mappings = [];
    const keep = this.#keep;
    this.#keep = [];
    for (const link of [...this.#links]) await link.closeAsync();
    const l = open();
    await offThread(l, () => l.bpf.bpf_object__close_async(ptr));
    keep.length = 0;
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** A record in a ring buffer: a view into the ring, valid only inside the drain callback. */
export type RingRecord = Uint8Array;

const RINGBUF_BUSY = 0x8000_0000;
const RINGBUF_DISCARD = 0x4000_0000;
const RINGBUF_LENGTH = 0x3fff_ffff;
const RINGBUF_HEADER = 8;

/**
 * A BPF ring buffer read directly through its shared mapping, without a callback per record:
 * the consumer page (read-write) and the producer page plus the data pages, which the kernel maps
 * twice in a row so that a record wrapping around the end is contiguous.
 */
export class RingReader implements Disposable {
  #l: Libs;
  #consumer: Deno.PointerObject | null;
  #producer: Deno.PointerObject | null;
  #size: number;
  #consumerPos: DataView;
  #producerPos: DataView;
  #data: Uint8Array;
  #header: DataView;
  #onClose: (r: RingReader) => void;

  constructor(l: Libs, fd: number, onClose: (r: RingReader) => void) {
    this.#l = l;
    this.#onClose = onClose;
    const page = l.pageSize;
    const size = ringSize(fd);
    const consumer = mmap(
      l,
      fd,
      page,
      PROT_READ | PROT_WRITE,
      0,
      "the ring buffer's consumer page",
    );
    let producer;
    try {
      producer = mmap(l, fd, page + 2 * size, PROT_READ, page, "the ring buffer's data pages");
    } catch (error) {
      l.c.munmap(consumer, BigInt(page));
      throw error;
    }
    this.#consumer = consumer;
    this.#producer = producer;
    this.#size = size;
    this.#consumerPos = new DataView(Deno.UnsafePointerView.getArrayBuffer(consumer, 8));
    this.#producerPos = new DataView(Deno.UnsafePointerView.getArrayBuffer(producer, 8));
    const data = Deno.UnsafePointer.offset(producer, page)!;
    this.#data = new Uint8Array(Deno.UnsafePointerView.getArrayBuffer(data, 2 * size));
    this.#header = new DataView(this.#data.buffer);
  }

  /** Bytes of data the ring holds. */
  get size(): number {
    return this.#size;
  }

  /** Bytes of records (with their headers) produced and not yet drained. */
  get pending(): number {
    if (!this.#consumer) throw new TypeError("Ring buffer is closed");
    return readU64(this.#producerPos) - readU64(this.#consumerPos);
  }

  /**
   * Hands committed records to `onRecord`, in order, and releases the space of each one it
   * accepts. Returning false leaves that record (and those after it) in the ring for the next
   * drain. The view passed to `onRecord` is only valid during the call: copy what must outlive it.
   * @returns the number of records accepted.
   */
  drain(onRecord: (record: RingRecord) => boolean): number {
    return this.drainAt((data, _view, at, len) => onRecord(data.subarray(at, at + len)));
  }

  /**
   * {@linkcode drain} without a view per record: `onRecord` gets the ring's data (as bytes and
   * as a DataView) and where the record is in it, for a consumer that copies it out directly.
   */
  drainAt(
    onRecord: (data: Uint8Array, view: DataView, at: number, len: number) => boolean,
  ): number {
    if (!this.#consumer) throw new TypeError("Ring buffer is closed");
    const size = this.#size;
    let cons = readU64(this.#consumerPos);
    const prod = readU64(this.#producerPos);
    let count = 0;
    try {
      while (cons < prod) {
        const at = cons % size;
        const header = this.#header.getUint32(at, true);
        if (header & RINGBUF_BUSY) break;
        const len = header & RINGBUF_LENGTH;
        if (!(header & RINGBUF_DISCARD)) {
          if (!onRecord(this.#data, this.#header, at + RINGBUF_HEADER, len)) break;
          count++;
        }
        cons += (len + RINGBUF_HEADER + 7) & ~7;
      }
    } finally {
      writeU64(this.#consumerPos, cons);
    }
    return count;
  }

  /** Unmaps the ring. Idempotent. */
  close(): void {
    const page = this.#l.pageSize;
    if (this.#producer) this.#l.c.munmap(this.#producer, BigInt(page + 2 * this.#size));
    if (this.#consumer) this.#l.c.munmap(this.#consumer, BigInt(page));
    if (this.#producer || this.#consumer) this.#onClose(this);
    this.#producer = null;
    this.#consumer = null;
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

function mmap(l: Libs, fd: number, length: number, prot: number, offset: number, what: string) {
  const p = l.c.mmap(null, BigInt(length), prot, MAP_SHARED, fd, BigInt(offset));
  if (isNull(p) || BigInt(Deno.UnsafePointer.value(p)) === MAP_FAILED) {
    fail(l, `Cannot map ${what}`, errno(l));
  }
  return p;
}

function readU64(view: DataView): number {
  return view.getUint32(0, true) + view.getUint32(4, true) * 2 ** 32;
}

function writeU64(view: DataView, value: number): void {
  view.setBigUint64(0, BigInt(value), true);
}

/** A ring buffer map's data size, from /proc/self/fdinfo (max_entries). */
function ringSize(fd: number): number {
  const info = Deno.readTextFileSync(`/proc/self/fdinfo/${fd}`);
  const match = /^max_entries:\s*(\d+)$/m.exec(info);
  if (!match) throw new LibbpfError(`Cannot read the size of ring buffer fd ${fd}`, 22);
  return Number(match[1]);
}
