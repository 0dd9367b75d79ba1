/**
 * The params rules of the sagas service's actions that start a saga (services/sagas.service.ts):
 * `{ key, input }`, the input's own fields stripped to what the saga reads.
 */

export const idRule = { type: "string" as const, min: 1, max: 64 };
export const accountRule = { type: "string" as const, min: 1, max: 128 };

/** `{ key, input: props }`, anything else removed. */
export const sagaParams = (props: Record<string, unknown>) => ({
  $$strict: "remove",
  key: { type: "string" as const, min: 1, max: 300 },
  input: { type: "object" as const, strict: "remove" as const, props },
});
