import { assertEquals, assertRejects, assertThrows } from "../tests/support/mod.ts";
import { archiveIn, GUEST_KERNELS, guestKernel, moduleClosure } from "./kernel.ts";

Deno.test("guestKernel: the pinned kernels by key, and a clear error for another", () => {
  assertEquals(guestKernel("6.1").release, "6.1.0-50-amd64");
  assertEquals(guestKernel("6.12").suite, "trixie");
  assertThrows(() => guestKernel("5.10"), TypeError, "expected 6.1 or 6.12");
  assertThrows(() => guestKernel("toString"), TypeError, "Unknown guest kernel");
  for (const [key, kernel] of Object.entries(GUEST_KERNELS)) {
    assertEquals(kernel.key, key);
    assertEquals(kernel.release.startsWith(`${key}.`), true, kernel.release);
    assertEquals(kernel.headers[0], `linux-headers-${kernel.release}`);
  }
});

Deno.test("moduleClosure: dependencies followed, built-in modules set apart", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(
      `${dir}/modules.dep`,
      [
        "kernel/drivers/net/virtio_net.ko.xz: kernel/drivers/net/net_failover.ko.xz " +
        "kernel/net/core/failover.ko.xz",
        "kernel/drivers/net/net_failover.ko.xz: kernel/net/core/failover.ko.xz",
        "kernel/net/core/failover.ko.xz:",
        "kernel/drivers/net/dummy.ko.xz:",
        "",
      ].join("\n"),
    );
    await Deno.writeTextFile(`${dir}/modules.builtin`, "kernel/drivers/virtio/virtio_pci.ko\n");
    assertEquals(await moduleClosure(dir, ["virtio_pci", "virtio-net", "dummy"]), {
      paths: [
        "kernel/drivers/net/dummy.ko.xz",
        "kernel/drivers/net/net_failover.ko.xz",
        "kernel/drivers/net/virtio_net.ko.xz",
        "kernel/net/core/failover.ko.xz",
      ],
      loadable: ["virtio-net", "dummy"],
      builtin: ["virtio_pci"],
    });
    await assertRejects(() => moduleClosure(dir, ["loop"]), Error, 'module "loop"');
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("archiveIn: the host suite's archive and keyring, in either sources format", () => {
  const keyring = "/usr/share/keyrings/debian-archive-keyring.gpg";
  assertEquals(
    archiveIn(
      "/etc/apt/sources.list.d/debian.sources",
      [
        "Types: deb",
        "URIs: http://mirror.example/debian-security",
        "Suites: bookworm-security",
        "",
        "Types: deb deb-src",
        "URIs: http://mirror.example/debian",
        "Suites: bookworm bookworm-updates",
        "Components: main",
        `Signed-By: ${keyring}`,
      ].join("\n"),
    ),
    { uri: "http://mirror.example/debian", signedBy: keyring },
  );
  assertEquals(
    archiveIn(
      "/etc/apt/sources.list",
      "# deb http://old.example/debian bookworm main\n" +
        "deb http://mirror.example/debian bookworm-backports main\n" +
        `deb [arch=amd64 signed-by=${keyring}] http://mirror.example/debian bookworm main\n`,
    ),
    { uri: "http://mirror.example/debian", signedBy: keyring },
  );
  assertEquals(
    archiveIn("/etc/apt/sources.list.d/x.list", "deb http://a/debian trixie main"),
    undefined,
  );
  assertEquals(
    archiveIn(
      "/etc/apt/sources.list.d/x.sources",
      "Types: deb-src\nURIs: http://a/debian\nSuites: bookworm",
    ),
    undefined,
  );
});
