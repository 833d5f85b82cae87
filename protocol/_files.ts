/**
 * Files of secrets: reading them only when they are private to the running user, creating them
 * mode 0600 in 0700 directories, atomically, and locking a directory while it is filled.
 *
 * @module
 */

/**
 * Refuses a file that holds a secret (a key, a token) when its group or others may read or
 * write it, or another user owns it; the message names the file and the command that fixes it.
 *
 * @throws {Deno.errors.NotFound} `path` does not exist.
 * @throws {Error} `path` is not private to the running user.
 */
export async function checkPrivateFile(path: string): Promise<void> {
  checkPrivate(path, await Deno.stat(path), "file");
}

/**
 * Refuses a directory of secrets (a state or guest directory) when its group or others have any
 * access to it, or another user owns it.
 *
 * @throws {Deno.errors.NotFound} `path` does not exist.
 * @throws {Error} `path` is not a directory private to the running user.
 */
export async function checkPrivateDirectory(path: string): Promise<void> {
  const info = await Deno.stat(path);
  if (!info.isDirectory) throw new Error(`Cannot use "${path}" as a directory: it is not one`);
  checkPrivate(path, info, "directory");
}

/** The text of `path`; `undefined` if it does not exist. */
export async function readOptional(path: string): Promise<string | undefined> {
  try {
    return await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw new Error(`Cannot read "${path}": ${(error as Error).message}`, { cause: error });
  }
}

/** Reads a key file, refusing it unless it is private; `undefined` if it does not exist. */
export async function readSecret(path: string): Promise<string | undefined> {
  try {
    await checkPrivateFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
  return await readOptional(path);
}

/** Whether anything (a dangling link included) is at `path`. */
export async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw new Error(`Cannot look at "${path}": ${(error as Error).message}`, { cause: error });
  }
}

function checkPrivate(path: string, info: Deno.FileInfo, what: "file" | "directory"): void {
  const uid = Deno.uid();
  if (uid !== null && info.uid !== null && info.uid !== uid) {
    throw new Error(
      `Cannot use ${what} "${path}": it is owned by uid ${info.uid}, not by uid ${uid} that ` +
        `runs ebpfmon; run "chown ${uid} ${path}"`,
    );
  }
  const mode = (info.mode ?? 0) & 0o777;
  if (mode & 0o077) {
    const fix = what === "file" ? "600" : "700";
    throw new Error(
      `Cannot use ${what} "${path}": its mode ${mode.toString(8).padStart(4, "0")} gives ` +
        `access to its group or others; run "chmod ${fix} ${path}"`,
    );
  }
}

/** Creates `dir` with mode 0700 where it is missing, and refuses it where it is not private. */
export async function makePrivateDirectory(dir: string): Promise<void> {
  try {
    await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  } catch (error) {
    throw new Error(`Cannot create directory "${dir}": ${(error as Error).message}`, {
      cause: error,
    });
  }
  await checkPrivateDirectory(dir);
}

/** Writes a new 0600 file atomically: to a temporary name first, then linked, never replacing. */
export async function publish(path: string, text: string): Promise<void> {
  const temporary = `${path}.${crypto.randomUUID()}.tmp`;
  try {
    await Deno.writeTextFile(temporary, text, { mode: 0o600, createNew: true });
    await Deno.link(temporary, path);
  } catch (error) {
    throw new Error(`Cannot create "${path}": ${(error as Error).message}`, { cause: error });
  } finally {
    await Deno.remove(temporary).catch(() => {});
  }
}

/** Runs `fn` holding an exclusive lock on `dir` (made 0700 if new); the kernel drops it on exit. */
export async function withLock<T>(dir: string, fn: () => Promise<T>): Promise<T> {
  await makePrivateDirectory(dir);
  using handle = await Deno.open(dir, { read: true });
  await handle.lock(true);
  return await fn();
}
