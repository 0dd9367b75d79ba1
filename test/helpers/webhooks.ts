import {
  createServer,
  type IncomingHttpHeaders,
  type Server,
  type ServerResponse,
} from "node:http";
import type { AddressInfo } from "node:net";
import type { ServiceBroker } from "moleculer";
import {
  ACTIVITY_EVENTS,
  RECORDED_MAX_ROWS,
  type ActivityRecorded,
  type ActivityRow,
  type ActivityType,
} from "../../lib/events/activity";
import type { DomainEvent } from "../../lib/events/domain";
import { verify } from "../../lib/webhooks/signer";
import { sendToChannel } from "./channels";

/**
 * A webhook receiver on loopback that records every request (headers and exact body)
 * and answers as `respond` says; and activity rows published on `activity.recorded`
 * exactly as the activity service's outbox does.
 */

export interface Hit {
  id: string;
  timestamp: string;
  signature: string;
  headers: IncomingHttpHeaders;
  body: string;
  at: number;
}

export interface Receiver {
  url: string;
  hits: Hit[];
  /** Attempts so far for one webhook-id. */
  attemptsOf(id: string): number;
  /** Whether every hit carries a valid signature for `secret`. */
  allSigned(secret: string): boolean;
  close(): Promise<void>;
}

/** `respond` gets the hit and how many attempts (this one included) its id has had. */
export async function startWebhookReceiver(
  respond: (hit: Hit, attempt: number, res: ServerResponse) => void = (_h, _n, res) =>
    res.writeHead(200).end(),
  port = 0,
): Promise<Receiver> {
  const hits: Hit[] = [];
  const count = new Map<string, number>();
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const one = (h: string) => String(req.headers[h] ?? "");
      const hit: Hit = {
        id: one("webhook-id"),
        timestamp: one("webhook-timestamp"),
        signature: one("webhook-signature"),
        headers: req.headers,
        body: Buffer.concat(chunks).toString("utf8"),
        at: Date.now(),
      };
      hits.push(hit);
      const n = (count.get(hit.id) ?? 0) + 1;
      count.set(hit.id, n);
      respond(hit, n, res);
    });
  });
  await new Promise<void>(resolve => server.listen(port, "127.0.0.1", resolve));
  const { port: bound } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${bound}/hook`,
    hits,
    attemptsOf: id => count.get(id) ?? 0,
    allSigned: secret =>
      hits.every(h =>
        verify(secret, h.headers as Record<string, string>, h.body, { toleranceSec: 600 }),
      ),
    close: () =>
      new Promise<void>(resolve => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

let seq = 0;

/** An activity row of `actorId`, with an id unique to this test run. */
export function activityRow(actorId: string, type: ActivityType = "transfer.in"): ActivityRow {
  const n = seq++;
  const id = `act_${process.pid}_${Date.now().toString(36)}_${n}`;
  return {
    id,
    cursor: String(n).padStart(12, "0"),
    type,
    at: new Date().toISOString(),
    actorId,
    tokenId: "tok_test",
    data: { amount: String(n + 1), from: "someone" },
  };
}

/** The domain event the activity service's outbox publishes for rows committed together. */
export const recordedEvent = (rows: ActivityRow[]): DomainEvent<ActivityRecorded> => ({
  eventId: `${ACTIVITY_EVENTS.recorded}:${rows[0]!.id}`,
  type: ACTIVITY_EVENTS.recorded,
  occurredAt: rows[0]!.at,
  data: { rows },
});

/** Publishes `rows` as the activity service does: RECORDED_MAX_ROWS to an event. */
export async function publishRows(broker: ServiceBroker, rows: ActivityRow[]): Promise<void> {
  for (let i = 0; i < rows.length; i += RECORDED_MAX_ROWS)
    await sendToChannel(broker, recordedEvent(rows.slice(i, i + RECORDED_MAX_ROWS)));
}
