/**
 * A log that peers cannot flood: what a peer can trigger (a refused handshake, a dropped
 * connection) is logged at most `perSecond` lines a second for each kind of line (the line with
 * its numbers left out: "refused 127.0.0.1:N: ... (the cap per address)" is one kind); the lines
 * beyond are counted, and the count is logged when the second is over. A flood of thousands of
 * connections a second then costs a few lines of each kind, not a disk.
 *
 * @module
 */

/** Options of {@linkcode limitLog}. */
export interface LogLimitOptions {
  /** Lines of one kind logged per second; the rest are counted. @default 10 */
  perSecond?: number;
  /** Kinds tracked at once; lines of further kinds share one count. @default 64 */
  maxKinds?: number;
  /** The clock, in milliseconds. @default Date.now */
  now?: () => number;
}

/** A rate-limited log: call it like the log it wraps; `flush` logs the counts now. */
export interface LimitedLog {
  (line: string): void;
  /** Logs how many lines of each kind were left out, if any. */
  flush(): void;
}

interface Kind {
  windowStart: number;
  logged: number;
  suppressed: number;
  /** The first line left out, to say what was left out. */
  example?: string;
}

/** The kind of a log line: the line with every run of digits as "N". */
export function kindOf(line: string): string {
  return line.replace(/\d+/g, "N");
}

/** Wraps `log` so that it logs at most `perSecond` lines of each kind a second. */
export function limitLog(log: (line: string) => void, options: LogLimitOptions = {}): LimitedLog {
  const perSecond = options.perSecond ?? 10;
  const maxKinds = options.maxKinds ?? 64;
  const now = options.now ?? Date.now;
  const kinds = new Map<string, Kind>();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const report = (kind: Kind) => {
    if (kind.suppressed) {
      log(`(${kind.suppressed} more lines like "${kind.example}" in the last second, not logged)`);
    }
    kind.suppressed = 0;
    kind.example = undefined;
  };
  const flush = () => {
    if (timer !== undefined) clearTimeout(timer);
    timer = undefined;
    for (const kind of kinds.values()) report(kind);
    kinds.clear();
  };
  const limited = (line: string) => {
    const at = now();
    let key = kindOf(line);
    if (!kinds.has(key) && kinds.size >= maxKinds) key = "";
    let kind = kinds.get(key);
    if (!kind) kinds.set(key, kind = { windowStart: at, logged: 0, suppressed: 0 });
    if (at - kind.windowStart >= 1000) {
      report(kind);
      kind.windowStart = at;
      kind.logged = 0;
    }
    if (kind.logged < perSecond) {
      kind.logged++;
      log(line);
      return;
    }
    kind.suppressed++;
    kind.example ??= line;
    if (timer === undefined) {
      const id = setTimeout(flush, Math.max(0, kind.windowStart + 1000 - at));
      Deno.unrefTimer(id);
      timer = id;
    }
  };
  return Object.assign(limited, { flush });
}
