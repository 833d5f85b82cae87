/**
 * The Debian 6.1 test guest's kernel BTF, for unit tests of views whose structures this
 * machine's kernel lacks (`struct module`, `mod_tree_root` without CONFIG_MODULES). It is taken
 * from the guest kernel the guest harness unpacked into `.guest/cache` (`./dev guest` or any
 * guest test fetches it): the xz payload of its bzImage, then the `.BTF` section of that ELF,
 * kept beside the image once extracted. Tests skip with the reason when it is not there.
 *
 * @module
 */

import { type Btf, parseBtf } from "../btf/mod.ts";

const CACHE = new URL("../../.guest/cache/", import.meta.url);
const XZ_MAGIC = [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00];

/** The guest kernel's BTF, or why it is not at hand. */
export async function guestBtf(): Promise<{ btf: Btf } | { reason: string }> {
  let dir: URL | undefined;
  try {
    for (const entry of Deno.readDirSync(CACHE)) {
      if (entry.isDirectory && entry.name.startsWith("linux-image-6.1.")) {
        dir = new URL(`${entry.name}/`, CACHE);
      }
    }
  } catch (error) {
    return { reason: `no guest kernel in .guest/cache (${(error as Error).message})` };
  }
  if (!dir) return { reason: "no Debian 6.1 guest kernel in .guest/cache" };
  const saved = new URL("vmlinux.btf", dir);
  try {
    return { btf: parseBtf(await Deno.readFile(saved)) };
  } catch {
    // Not extracted yet.
  }
  const boot = new URL("boot/", dir);
  const image = [...Deno.readDirSync(boot)].find((e) => e.name.startsWith("vmlinuz-"));
  if (!image) return { reason: `no vmlinuz in ${boot.pathname}` };
  const bzImage = await Deno.readFile(new URL(image.name, boot));
  const start = findBytes(bzImage, XZ_MAGIC);
  if (start < 0) return { reason: `${image.name} holds no xz payload` };
  let elf: Uint8Array;
  try {
    const xz = new Deno.Command("xz", {
      args: ["-dc", "--single-stream"],
      stdin: "piped",
      stdout: "piped",
      stderr: "null",
    }).spawn();
    const writer = xz.stdin.getWriter();
    const [output] = await Promise.all([
      xz.output(),
      // xz stops reading at the end of the stream: the bytes after it are not its to read.
      writer.write(bzImage.subarray(start)).then(() => writer.close()).catch(() => {}),
    ]);
    elf = output.stdout;
  } catch (error) {
    return { reason: `cannot run xz (${(error as Error).message})` };
  }
  const btf = elfSection(elf, ".BTF");
  if (!btf) return { reason: `the kernel in ${image.name} has no .BTF section` };
  await Deno.writeFile(saved, btf);
  return { btf: parseBtf(btf) };
}

function findBytes(haystack: Uint8Array, needle: number[]): number {
  outer: for (let i = 0; i + needle.length <= haystack.length; i++) {
    for (let j = 0; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

/** The bytes of section `name` of a little-endian ELF64 file. */
function elfSection(elf: Uint8Array, name: string): Uint8Array | undefined {
  if (elf.length < 64 || elf[0] !== 0x7f || elf[4] !== 2 || elf[5] !== 1) return undefined;
  const v = new DataView(elf.buffer, elf.byteOffset, elf.byteLength);
  const shoff = Number(v.getBigUint64(0x28, true));
  const shentsize = v.getUint16(0x3a, true);
  const shnum = v.getUint16(0x3c, true);
  const shstrndx = v.getUint16(0x3e, true);
  const header = (i: number) => {
    const at = shoff + i * shentsize;
    return {
      name: v.getUint32(at, true),
      offset: Number(v.getBigUint64(at + 0x18, true)),
      size: Number(v.getBigUint64(at + 0x20, true)),
    };
  };
  const strings = header(shstrndx);
  const decoder = new TextDecoder();
  for (let i = 0; i < shnum; i++) {
    const h = header(i);
    const at = strings.offset + h.name;
    const end = elf.indexOf(0, at);
    if (decoder.decode(elf.subarray(at, end)) === name) {
      return elf.slice(h.offset, h.offset + h.size);
    }
  }
  return undefined;
}
