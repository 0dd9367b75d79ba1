import type { StaticOperation } from "./document";

/** The live-events route's function aliases (mixins/live-events.mixin.ts), by alias key. */
const ref = (name: string) => ({ $ref: `#/components/responses/${name}` });

export const LIVE_OPERATIONS: Record<string, StaticOperation> = {
  "GET events": {
    operationId: "live.events",
    tags: ["activity"],
    summary: "The caller's activity rows as they happen (Server-Sent Events)",
    description:
      "Each row is one event: `id:` its cursor, `event:` its type, `data:` the row as JSON. " +
      "`Last-Event-ID` (sent by EventSource when it reconnects) or `?after=` resumes after " +
      "that row with every later row, in order, none twice; without either, only rows that " +
      "come after the connection. A `: ping` comment every 15 s. A browser's EventSource, " +
      "which cannot send the bearer token, uses the cookie of POST /api/me/events/session.",
    security: [{ bearer: [] }, { eventsCookie: [] }],
    parameters: [
      {
        name: "after",
        in: "query",
        required: false,
        description: "Resume after this row's cursor",
        schema: { type: "string", maxLength: 200 },
      },
      {
        name: "Last-Event-ID",
        in: "header",
        required: false,
        description: "Resume after this row's cursor (wins over `after`)",
        schema: { type: "string", maxLength: 200 },
      },
    ],
    responses: {
      200: {
        description: "The stream; it stays open",
        content: { "text/event-stream": { schema: { type: "string" } } },
      },
      400: ref("ValidationError"),
      401: ref("Unauthorized"),
      403: ref("Forbidden"),
      503: {
        $ref: "#/components/responses/ServiceUnavailable",
        description:
          "Too many streams for this user or this server (Retry-After), or activity down",
      },
    },
  },
  "POST events/session": {
    operationId: "live.session",
    tags: ["activity"],
    summary: "Sets the stream cookie a browser's EventSource authenticates with",
    description:
      "HttpOnly, SameSite=Strict, Path=/api/me/events; valid for the stream only, at most as " +
      "long as the bearer token that made it. No body. Make a new one before `expiresAt`.",
    security: [{ bearer: [] }],
    responses: {
      200: {
        description: "Set-Cookie: mintmesh_events=…",
        content: {
          "application/json": {
            schema: {
              type: "object",
              required: ["expiresAt"],
              additionalProperties: false,
              properties: { expiresAt: { type: "string", format: "date-time" } },
            },
          },
        },
      },
      401: ref("Unauthorized"),
      403: ref("Forbidden"),
    },
  },
  "DELETE events/session": {
    operationId: "live.endSession",
    tags: ["activity"],
    summary: "Clears the stream cookie",
    security: [],
    responses: {
      200: {
        description: "The cookie cleared",
        content: {
          "application/json": { schema: { type: "object", additionalProperties: false } },
        },
      },
    },
  },
};
