/**
 * The tamper-evident trail over HTTP: verify, GDPR erasure, streamed exports with signed manifests,
 * the public key. Each route asks for the least role it needs (./roles.ts): erasure needs admin,
 * the rest auditor. Every call is recorded in the chain, the actor named by its role (`api:admin`,
 * `api:auditor`, or `api:open` without tokens).
 */
import { tagQuery } from "../store/filters.ts";
import { Elysia } from "elysia";
import { z } from "zod";
import { exportFilterSchema, exportFormats, type ExportFormat } from "../trail/export.ts";
import type { AuditTrail } from "../store/contract.ts";
import type { Runtime } from "../pipeline/runtime.ts";
import type { AccessGuard, Role } from "./roles.ts";
import { apiError } from "./http.ts";
import { errorMessage } from "../errors.ts";
import { isExportRefusal } from "../trail/export-check.ts";
import { isRedactionRefusal } from "../trail/erase-check.ts";

const contentTypes: Record<ExportFormat, string> = {
  csv: "text/csv; charset=utf-8; header=present",
  json: "application/json",
  ndjson: "application/x-ndjson",
};

export function auditTrailRoutes(rt: Runtime, access: AccessGuard, actorOf: (request: Request) => string = () => "api") {
  /** Runs `handle` for a request to `route` with the role `needs`, on the primary store's trail. */
  const withTrail = (
    request: Request,
    route: string,
    handle: (trail: AuditTrail) => Response | Promise<Response>,
    needs: Role = "auditor",
  ) => {
    const denied = access(request, needs, route);
    if (denied) return denied;
    return handle(rt.trail);
  };

  return new Elysia({ prefix: "/audit" })
    .get("/verify", ({ request, route }) =>
      withTrail(request, route, async (trail) => {
        const { recorded, ...report } = await trail.verify(actorOf(request));
        // As for queries: an audit action that cannot be recorded is not answered.
        if (!recorded) return apiError("audit_unavailable", "The audit trail cannot record this verification right now; retry shortly.");
        // 409: the trail contradicts its own chain; the body names the first bad seq and why.
        return Response.json(report, { status: report.ok ? 200 : 409 });
      }),
    )
    .delete("/user/:id", ({ request, params, route }) =>
      withTrail(
        request,
        route,
        async (trail) => {
          try {
            await trail.eraseUser(params.id, actorOf(request));
          } catch (error) {
            // A record to redact was edited in the database: redacting it would launder the edit. The
            // message names the seq, never the user.
            if (isRedactionRefusal(error)) {
              rt.log.error(`an erasure through the audit API was refused: ${errorMessage(error)}`);
              return apiError("erasure_refused", errorMessage(error));
            }
            // E.g. another process held the write lock past the busy timeout: nothing was erased (one transaction).
            rt.log.error(`an erasure through the audit API failed: ${errorMessage(error)}`);
            return apiError("audit_unavailable", "The audit trail cannot be written right now, so nothing was erased; retry shortly.");
          }
          // Nor may the limits view (GET /audit/limits) name the user any longer.
          for (const plugin of rt.plugins) plugin.limit?.forgetUser?.(params.id);
          // The same answer whether or not the user had records: erasure must not reveal existence.
          return Response.json({ status: "erased" });
        },
        "admin",
      ),
    )
    .get("/export/:format", ({ request, params, route }) =>
      withTrail(request, route, async (trail) => {
        const format = z.enum(exportFormats).safeParse(params.format);
        if (!format.success) {
          return apiError("not_found", `No export format '${params.format}'; use /audit/export/csv, /json or /ndjson.`);
        }
        const filter = exportFilterSchema.safeParse(tagQuery(new URL(request.url).searchParams));
        if (!filter.success) {
          return apiError("invalid_query", `Invalid query: ${z.prettifyError(filter.error)}`);
        }
        const run = trail.export(format.data, filter.data, actorOf(request));
        // The first chunk before the answer: a trail edited behind the store is refused as a 409
        // when the check fails there (its checkpoint, or the first records); later, the stream breaks
        // off and no manifest exists.
        const reader = run.stream().getReader();
        let first: Awaited<ReturnType<typeof reader.read>>;
        try {
          first = await reader.read();
        } catch (error) {
          if (isExportRefusal(error)) return apiError("export_refused", errorMessage(error));
          throw error;
        }
        const body = new ReadableStream<Uint8Array>(
          {
            start(controller) {
              if (first.done) controller.close();
              else controller.enqueue(first.value);
            },
            async pull(controller) {
              const next = await reader.read();
              if (next.done) controller.close();
              else controller.enqueue(next.value);
            },
            cancel: (reason) => reader.cancel(reason),
          },
          { highWaterMark: 0 },
        );
        return new Response(body, {
          headers: {
            "content-type": contentTypes[format.data],
            "content-disposition": `attachment; filename="audit-export-${run.id}.${format.data}"`,
            "x-audit-export-id": run.id,
            link: `</audit/exports/${run.id}/manifest>; rel="describedby"`,
          },
        });
      }),
    )
    .get("/exports/:id/manifest", ({ request, params, route }) =>
      withTrail(request, route, async (trail) => {
        const manifest = await trail.manifest(params.id);
        if (manifest) return Response.json(manifest);
        return apiError("not_found", `No finished export has id '${params.id}' (a manifest exists once the export's last byte was sent).`);
      }),
    )
    .get("/pubkey", ({ request, route }) =>
      withTrail(request, route, (trail) => new Response(trail.publicKey(), { headers: { "content-type": "application/x-pem-file" } })),
    );
}
