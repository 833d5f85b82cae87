/**
 * What the API reads: its path parameters and queries, as zod schemas that validate every
 * request (a bad value is a 422 naming the parameter) and document it in the OpenAPI document.
 *
 * @module
 */

import { z } from "@hono/zod-openapi";
import { parseCgroupPath, parseNamespaceId } from "../linux/mod.ts";

const NON_NEGATIVE_INTEGER = "expected a non-negative integer";

/** A non-negative integer given as a decimal string (a path or query parameter). */
function integerParameter(name: string, location: "path" | "query", description: string) {
  return z.string({ error: NON_NEGATIVE_INTEGER })
    .regex(/^\d{1,15}$/, { error: NON_NEGATIVE_INTEGER })
    .transform(Number)
    .openapi({ param: { name, in: location, description }, type: "integer", minimum: 0 });
}

const vmParameter = z.string().openapi({
  param: { name: "vm", in: "path", description: "Name of the guest, as configured" },
  example: "web-1",
});

/** Path parameters of `/v1/vms/{vm}/…`. */
export const VmParams = z.object({ vm: vmParameter });

/** Path parameters of `/v1/vms/{vm}/processes/{pid}`. */
export const ProcessParams = z.object({
  vm: vmParameter,
  pid: integerParameter("pid", "path", "Process id (thread-group id) in the guest"),
});

const freshnessQuery = {
  max_age_ms: integerParameter(
    "max_age_ms",
    "query",
    "Serve the cached snapshot only when at most this old; otherwise refresh first",
  ).optional(),
  allow_stale: z.enum(["true", "false"], { error: 'expected "true" or "false"' })
    .transform((value) => value === "true")
    .optional()
    .openapi({
      param: {
        name: "allow_stale",
        in: "query",
        description: "When the agent cannot be reached, serve the last snapshot, marked stale",
      },
    }),
};

/** Query of `/v1/vms/{vm}/processes/{pid}` and the other views: how fresh the snapshot must be. */
export const FreshnessQuery = z.object(freshnessQuery);

/**
 * The hex of a guest name's bytes, beside the name when its text does not show them plainly
 * (kernel/name.ts).
 */
/** A namespace id parameter, as container_filter.ts reads it. */
function namespaceParameter(name: string, description: string) {
  return z.string({ error: "expected a namespace id" })
    .transform((text, ctx) => {
      try {
        return parseNamespaceId(text, name);
      } catch (error) {
        ctx.addIssue({ code: "custom", message: (error as Error).message });
        return z.NEVER;
      }
    })
    .optional()
    .openapi({
      param: { name, in: "query", description },
      type: "integer",
      minimum: 1,
      maximum: 0xffff_ffff,
    });
}

/** Query of `/v1/vms/{vm}/processes`: filters, then how fresh the snapshot must be. */
export const ProcessesQuery = z.object({
  pid: integerParameter("pid", "query", "Only the process with this id").optional(),
  ppid: integerParameter("ppid", "query", "Only children of this process").optional(),
  uid: integerParameter("uid", "query", "Only processes with this real uid").optional(),
  comm: z.string({ error: "expected a string" }).optional().openapi({
    param: {
      name: "comm",
      in: "query",
      description: "Only processes whose command name contains this (case-sensitive)",
    },
  }),
  cgroup: z.string({ error: "expected a cgroup path" })
    .transform((text, ctx) => {
      try {
        return parseCgroupPath(text, "cgroup");
      } catch (error) {
        ctx.addIssue({ code: "custom", message: (error as Error).message });
        return z.NEVER;
      }
    })
    .optional()
    .openapi({
      param: {
        name: "cgroup",
        in: "query",
        description: "Only processes in this cgroup v2 cgroup or below it (a container's " +
          "cgroup, as the 0:: line of /proc/PID/cgroup shows it)",
      },
      type: "string",
    }),
  pidns: namespaceParameter(
    "pidns",
    "Only processes in this pid namespace (its inode number, as /proc/PID/ns/pid shows it)",
  ),
  threads: z.enum(["true", "false"], { error: 'expected "true" or "false"' })
    .transform((value) => value === "true")
    .optional()
    .openapi({
      param: {
        name: "threads",
        in: "query",
        description: "List each process's threads too (`threadList`)",
      },
    }),
  ...freshnessQuery,
});

const PORT = "expected a port number (1-65535)";

/** Query of `/v1/vms/{vm}/sockets`: filters, then how fresh the snapshot must be. */
export const SocketsQuery = z.object({
  protocol: z.enum(["tcp", "udp"], { error: 'expected "tcp" or "udp"' }).optional().openapi({
    param: { name: "protocol", in: "query", description: "Only sockets of this protocol" },
  }),
  state: z.string({ error: "expected a string" }).optional().openapi({
    param: {
      name: "state",
      in: "query",
      description: "Only sockets in exactly this state: LISTEN, ESTABLISHED, TIME_WAIT... for " +
        "TCP, UNCONN or ESTABLISHED for UDP",
    },
  }),
  port: z.string({ error: PORT })
    .regex(/^\d{1,5}$/, { error: PORT })
    .transform(Number)
    .refine((port) => port >= 1 && port <= 65535, { error: PORT })
    .optional()
    .openapi({
      param: {
        name: "port",
        in: "query",
        description: "Only sockets with this local or remote port",
      },
      type: "integer",
      minimum: 1,
      maximum: 65535,
    }),
  pid: integerParameter("pid", "query", "Only sockets this process holds open").optional(),
  netns: namespaceParameter(
    "netns",
    "Only sockets of this network namespace (its inode number, as /proc/PID/ns/net shows it)",
  ),
  ...freshnessQuery,
});
